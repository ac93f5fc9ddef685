"""The predictor keeps the contract its /openapi.json publishes, under any input.

schemathesis, run as a user runs it (its CLI, against the predictor under uvicorn with a served
model), generates valid and invalid requests from the document and checks every answer with
all its checks, a fixed seed and a bounded number of examples, with API keys off and on. The
inputs that once broke the contract are regression tests of their own: a body nested ~990
levels deep (500 and a 1,600-line traceback with local variables), a body that is not sent as
JSON (answered 200), two X-API-Key headers, a trailing slash (a 307 to the container's port).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.logs import TRACEBACKS_PER_MINUTE, configure_logging
from mlops_stack.serving.access import digest, new_api_key
from mlops_stack.serving.app import create_app
from mlops_stack.settings import Settings, get_settings
from mlops_stack.stack import Stack

from .conftest import mixed_table
from .servers import serving

ROOT = Path(__file__).resolve().parents[1]
ROW = {"age": 42.0, "income": 30000.0, "city": "paris", "plan": "basic"}
JSON_POSTS = ("/predict", "/predict/batch", "/feedback")
SEED = 20261129
EXAMPLES = 40
"""Per operation and phase; both runs together take about a minute on two busy cores."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Settings]:
    """Settings of a registry whose champion is a classifier of mixed-type data."""
    root = tmp_path_factory.mktemp("contract")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLOPS_DATA_DIR": str(root / "mlops-data"),
            "MLOPS_CANDIDATES": "logistic_regression",
            "MLOPS_LATENCY_SAMPLES": "10",
            "MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.05",
        }.items():
            mp.setenv(key, value)
        for key in ("MLOPS_REDIS_URL", "MLOPS_API_KEYS", "MLOPS_RATE_LIMIT_PER_MINUTE"):
            mp.delenv(key, raising=False)
        get_settings.cache_clear()
        path = root / "customers.csv"
        mixed_table().to_csv(path, index=False)
        train_flow(
            TrainParameters.from_settings(get_settings(), data_path=str(path), target="churn")
        )
        yield get_settings()
    get_settings.cache_clear()


@contextmanager
def client(settings: Settings, **overrides: object) -> Iterator[TestClient]:
    with TestClient(create_app(Stack(settings.model_copy(update=overrides)))) as test_client:
        yield test_client


# --- schemathesis -----------------------------------------------------------------------------


def _schemathesis(base: str, cwd: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``st run`` over the served document: every check, fixed seed, bounded examples. In a
    fresh directory: no crash cache of an earlier run (``.schemathesis/``) is replayed."""
    return subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
            "--checks", "all",
            "--seed", str(SEED),
            "--max-examples", str(EXAMPLES),
            "--workers", "1",
            "--generation-database", "none",
            "--no-color",
            *options,
        ],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize("keys", [False, True], ids=["keys-off", "keys-on"])
def test_schemathesis_finds_no_failure(trained, tmp_path, keys):
    key = new_api_key()
    settings = trained.model_copy(update={"api_keys": f"contract:{digest(key)}" if keys else None})
    with serving(create_app(Stack(settings))) as base:
        run = _schemathesis(base, tmp_path, *(["--header", f"X-API-Key: {key}"] if keys else []))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "No issues found" in output, output
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and int(generated[1]) == int(generated[2]) > 7 * EXAMPLES, output


def _schema(document: dict, operation: dict, status: int) -> dict:
    ref = operation["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_the_document_lists_the_access_answers_as_configured(trained):
    key = new_api_key()
    with client(trained, api_keys=f"c:{digest(key)}", rate_limit_per_minute=60) as keyed:
        document = keyed.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "400" in statuses, f"{method} {path}"
            if path in ("/health", "/ready", "/metrics"):
                assert operation["security"] == [] and not statuses & {"401", "403", "429"}
                continue
            assert {"401", "403", "429"} <= statuses, f"{method} {path}"
            retry = operation["responses"]["429"]["headers"]["Retry-After"]
            assert retry["required"] and retry["schema"]["type"] == "integer"
            assert _schema(document, operation, 429)["required"] == ["detail"]
    for path in JSON_POSTS:
        assert "415" in document["paths"][path]["post"]["responses"]
    label = document["components"]["schemas"]["FeedbackItem"]["properties"]["label"]
    assert label["enum"] == ["no", "yes"]  # the served model's classes
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    with client(trained) as open_client:
        statuses = set(
            open_client.get("/openapi.json").json()["paths"]["/model"]["get"]["responses"]
        )
    assert statuses == {"200", "400", "503"}  # no key, no limit: no 401, 403 or 429


# --- bodies nested too deeply -----------------------------------------------------------------


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    "body",
    [
        _nested(990),
        '{"features": {"age": ' + _nested(990) + "}}",
        '{"rows": [' + _nested(40) + "]}",
    ],
    ids=["array", "in-features", "just-over"],
)
def test_a_deeply_nested_body_is_a_422_before_it_is_parsed(trained, path, body):
    with client(trained) as predictor:
        response = predictor.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"] and error["type"] == "json_too_deep"
    assert "at most 32 levels (MLOPS_MAX_JSON_DEPTH)" in error["msg"]


def test_nesting_within_the_bound_is_judged_by_the_schema(trained):
    with client(trained, max_json_depth=3) as predictor:
        ok = predictor.post("/predict/batch", json={"rows": [ROW]})  # depth 3
        deeper = predictor.post("/predict/batch", json={"rows": [{**ROW, "age": [[1]]}]})
    assert ok.status_code == 200, ok.text
    assert deeper.json()["detail"][0]["type"] == "json_too_deep"


def test_a_recursion_error_while_handling_a_request_is_a_422_not_a_500(trained):
    app = create_app(Stack(trained))

    def recurse(depth: int = 0) -> int:
        return recurse(depth + 1)

    app.add_api_route("/recurse", lambda: recurse())
    with TestClient(app) as predictor:
        response = predictor.get("/recurse")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body"]


# --- Content-Type -------------------------------------------------------------------------------

BODIES = {
    "/predict": {"features": ROW},
    "/predict/batch": {"rows": [ROW]},
    "/feedback": {"request_id": "nobody", "label": "yes"},
}


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None],
    ids=["text", "form (curl -d without -H)", "none"],
)
def test_a_body_not_sent_as_json_is_a_415_naming_the_type(trained, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    with client(trained) as predictor:
        response = predictor.post(path, content=json.dumps(BODIES[path]), headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type" in response.json()["detail"]
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_with_or_without_a_charset_is_answered(trained, content_type):
    with client(trained) as predictor:
        answers = {
            path: predictor.post(
                path, content=json.dumps(body), headers={"Content-Type": content_type}
            )
            for path, body in BODIES.items()
        }
    assert {path: r.status_code for path, r in answers.items()} == {
        "/predict": 200,
        "/predict/batch": 200,
        "/feedback": 404,  # an unknown request id: judged, not refused
    }


def test_a_post_without_a_body_or_a_type_gets_the_422_for_a_missing_body(trained):
    with client(trained) as predictor:
        response = predictor.post("/feedback")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body"]


def test_the_documented_curl_examples_send_json():
    """curl -d without -H sends application/x-www-form-urlencoded, which is a 415 now."""
    posts = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text().replace("\\\n", " ")  # a command and its continuation lines
        for command in re.findall(r"curl [^\n]*", text):
            if " -d " in command or "--data" in command:
                posts.append((page.name, command))
    assert len(posts) >= 8
    for page, command in posts:
        assert re.search(r"-H ['\"]content-type: application/json['\"]", command, re.I), (
            f"{page}: {command}"
        )


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("root_path", ["", "/api"])
def test_a_trailing_slash_is_a_404_never_a_redirect(trained, root_path):
    with client(trained, api_root_path=root_path) as predictor:
        for method, path in [("POST", "/predict/"), ("GET", "/model/"), ("GET", "/ready/")]:
            response = predictor.request(
                method, f"{root_path}{path}", json={"features": ROW}, follow_redirects=False
            )
            assert response.status_code == 404, (path, response.status_code)
            assert "location" not in response.headers
            assert response.json() == {"detail": "Not Found"}
        assert predictor.post(f"{root_path}/predict", json={"features": ROW}).status_code == 200


# --- the log under an error storm -------------------------------------------------------------


@contextmanager
def logging_to_stderr(json_lines: bool) -> Iterator[None]:
    configure_logging("INFO", json=json_lines)
    try:
        yield
    finally:
        for logger in (logging.getLogger(), logging.getLogger("mlops_stack")):
            logger.handlers = [h for h in logger.handlers if h.get_name() != "mlops-stack"]
        logging.getLogger("mlops_stack").propagate = True


def _failing_app(settings: Settings):
    """The predictor with one more route that fails with a secret in a local variable."""
    app = create_app(Stack(settings))
    failure = type(f"Planted{uuid.uuid4().hex[:8]}", (RuntimeError,), {})  # a budget of its own

    def fail() -> None:
        api_secret = "sk-live-" + "9f8e7d6c5b4a" * 3  # what a local variable can hold
        raise failure(f"the handler failed ({len(api_secret)})")

    app.add_api_route("/fail", fail)
    return app


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_an_error_storm_logs_one_line_per_error_and_no_local_variable(trained, capsys, json_lines):
    with logging_to_stderr(json_lines), TestClient(_failing_app(trained)) as predictor:
        capsys.readouterr()
        answers = [
            predictor.get("/fail", headers={"X-Request-ID": f"storm-{i}"}) for i in range(50)
        ]
        err = capsys.readouterr().err
    assert {r.status_code for r in answers} == {500}
    assert answers[0].json() == {"detail": "internal error", "request_id": "storm-0"}
    assert "9f8e7d6c5b4a" not in err and "api_secret =" not in err
    lines = err.splitlines()
    if json_lines:
        events = [json.loads(line) for line in lines]
        errors = [e for e in events if e.get("path") == "/fail"]
        assert len(events) == len(errors) == 50  # nothing else: no second or third traceback
        shown = [e for e in errors if "exception" in e]
        assert 1 <= len(shown) <= 2 * TRACEBACKS_PER_MINUTE  # the storm may straddle a minute
        assert sum(bool(e.get("traceback_suppressed")) for e in errors) == 50 - len(shown)
        assert all(e["level"] == "error" and e["status"] == 500 for e in errors)
        assert all("the handler failed" in e["exception"] for e in shown)
    else:
        assert sum("path=/fail" in line for line in lines) == 50
        assert len(lines) < 50 + 2 * TRACEBACKS_PER_MINUTE * 60  # tracebacks of <= 20 frames
