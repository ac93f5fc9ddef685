"""Shared fixtures: an isolated embedded stack per test; servers only for the `stack` tier.

Two tiers (README, "Run the tests"):

- ``pytest -m "not stack"``: the unit tests, no server process at all (no PostgreSQL, Redis
  or Prefect), in seconds.
- ``pytest``: everything; what CI runs. Tests marked ``stack`` also get one temporary Prefect
  API for the whole session (``prefect_server``), started by the first of them.

A test is ``stack`` when it asks for a server fixture (``SERVER_FIXTURES``), is parametrised
over PostgreSQL, lives in a module of ``STACK_MODULES``, or is named in ``STACK_TESTS``: those
run flows, trains models or start processes (kernels, a browser). The marker is set here in
``pytest_collection_modifyitems``, so a test module needs no marker of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_stack.settings import get_settings

from .servers import QuietHandler, loopback_http

# Prefect's test server must not try to phone home from a machine without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


# Modules whose every test needs a server or trains models: flows, the worker, the CLI's
# train/monitor/retrain/demo, the predictor over a trained champion, notebooks, the browser.
STACK_MODULES = {
    "test_cli",
    "test_contract",  # schemathesis against the predictor over a trained champion
    "test_dashboard",  # the pages over embedded MLflow stores and a monitoring database
    "test_dashboard_browser",
    "test_demo",
    "test_landing",  # the landing page over a served predictor, PostgreSQL, Redis and Prefect
    "test_monitor",
    "test_monitoring_db",
    "test_notebooks",
    "test_regression",
    "test_replicas",  # several predictors over a trained champion, and a real Prometheus
    "test_retrain",
    "test_serving",
    "test_serving_registry",
    "test_serving_stack",
    "test_serving_tasks",
    "test_serving_workers",  # `mlops serve api --workers 2` in its own process
    "test_shadow",  # the predictor over a trained champion and a slow challenger
    "test_train_flow",
    "test_worker",
    "test_workers_scaled",  # two bootstraps, two runners, two log writers at once
}
# Tests of otherwise unit modules that run flows (train_flow, monitor_flow, the dashboard's
# retrain): "module::test name" (the name without parameters).
STACK_TESTS = {
    "test_columns::test_messy_table_trains_in_under_a_minute_and_reports_each_column",
    "test_estimate::test_a_monitor_run_stores_and_logs_the_estimate_labelled_or_not",
    "test_estimate::test_the_quality_page_shows_the_estimate_next_to_the_realised_figures",
    "test_simulate::test_simulated_drifted_traffic_with_labels_is_logged_and_detected",
    "test_window::test_monitor_run_samples_the_window_and_counts_quality_over_all_rows",
}
# Fixtures that are servers, or reach the test servers of infrastructure/ci/services.sh.
SERVER_FIXTURES = {"prefect_server", "services", "postgres_url", "stream_name"}


def _needs_servers(item: pytest.Item) -> bool:
    module = item.module.__name__.rpartition(".")[2] if hasattr(item, "module") else ""
    name = getattr(item, "originalname", item.name)
    callspec = getattr(item, "callspec", None)
    return (
        module in STACK_MODULES
        or f"{module}::{name}" in STACK_TESTS
        or bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
        # a fixture parametrised over the databases asks for postgres_url at run time
        or (callspec is not None and "postgresql" in callspec.params.values())
    )


def _stack_deselected(config: pytest.Config) -> bool:
    """True when ``-m`` leaves out every ``stack`` test (``-m "not stack"``)."""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
        # a stack test carries the stack marker and whatever markers it has of its own:
        # only an expression false for {stack} with no other marker rules them all out
        return not expression.evaluate(lambda name, **kwargs: name == "stack")
    except Exception:  # an expression or a pytest this does not understand: collect all
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The unit tier does not import the stack modules at all (mlflow, Prefect, ...)."""
    if collection_path.suffix == ".py" and collection_path.stem in STACK_MODULES:
        return True if _stack_deselected(config) else None
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the ``stack`` tier, and give each of its tests the session's Prefect API.

    ``prefect_server`` goes first among the test's fixtures, so it is up before any module
    fixture of the test runs a flow; the unit tier never starts it.
    """
    for item in items:
        if not _needs_servers(item):
            continue
        item.add_marker(pytest.mark.stack)
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and "prefect_server" not in fixturenames:
            # a new list: the parametrised variants of one test share the old one, and a
            # unit variant (SQLite) must not start the server its PostgreSQL twin needs
            item.fixturenames = ["prefect_server", *fixturenames]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for the whole session (starting one costs several seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Embedded settings whose MLflow DB and artifacts live in this test's own directory.

    Yields a function that sets more ``MLOPS_*`` variables and returns fresh settings.
    """
    for key in list(os.environ):
        if key.startswith("MLOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "mlops-data"))
    # what `mlops` commands export for Prefect, so that they do not leak between tests
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("MLOPS_LATENCY_SAMPLES", "20")
    monkeypatch.chdir(tmp_path)

    def configure(**env: str):
        for key, value in env.items():
            monkeypatch.setenv(f"MLOPS_{key.upper()}", str(value))
        get_settings.cache_clear()
        return get_settings()

    # a CLI command run in-process installs its stack for the process: not for the next test
    from mlops_stack.stack import install  # here: it imports MLflow, which unit tests skip

    install(None)
    configure()
    yield configure
    install(None)
    get_settings.cache_clear()


def xor_table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table a linear model cannot learn (label = sign of x1 * x2) but trees can."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, rows))
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": x3, "label": (x1 * x2 > 0).astype(int)})


def mixed_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values in both kinds."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    income = rng.lognormal(10, 0.5, rows)
    city = rng.choice(["paris", "lyon", "nantes", "lille"], rows)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    score = (age - 50) / 15 + (plan == "premium") * 1.5 - (city == "lille") * 1.0
    churn = np.where(score + rng.normal(0, 0.7, rows) > 0, "yes", "no")
    frame = pd.DataFrame({"age": age, "income": income, "city": city, "plan": plan, "churn": churn})
    frame.loc[rng.choice(rows, 25, replace=False), "income"] = np.nan
    frame.loc[rng.choice(rows, 20, replace=False), "city"] = None
    return frame


# --- the real PostgreSQL and Redis of infrastructure/ci/services.sh ----------------------------


@pytest.fixture(scope="session")
def services():
    """The test servers; fails (never skips) when `infrastructure/ci/services.sh` did not run.

    Session-scoped, so it reads ``MLOPS_TEST_*`` before ``stack`` clears the ``MLOPS_*`` variables.
    """
    from .services import from_environment

    return from_environment()


@pytest.fixture
def postgres_url(services):
    """The URL of a fresh, empty PostgreSQL database of this test's own."""
    from .services import temporary_database

    with temporary_database(services.postgres_url) as url:
        yield url


@pytest.fixture
def stream_name(services):
    """A Redis stream name of this test's own on the test server, deleted afterwards."""
    import uuid

    import redis

    name = f"test:predictions:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(services.redis_url)
    try:
        client.delete(name, f"{name}:dead")
    except redis.RedisError:
        pass  # Redis unreachable: the key stays, harmless under its unique name
    finally:
        client.close()


@pytest.fixture
def webhook():
    """A real HTTP server on loopback that records what is POSTed to it."""
    received: list[dict] = []

    class Handler(QuietHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

    with loopback_http(Handler) as url:
        yield f"{url}/hook", received


RECORDED_PROMETHEUS = Path(__file__).parent / "data" / "prometheus"


class PrometheusReplay:
    """Which recorded answers ``prometheus_replay`` gives, and the queries it was asked."""

    def __init__(self) -> None:
        self.query, self.alerts = "query-traffic", "alerts-none"
        # the error rate's query and targets (dashboard/replicas.py): a fleet of 4 predictors
        self.requests, self.targets = "query-requests-fleet", "targets-fleet"
        self.asked: list[str] = []


@pytest.fixture
def prometheus_replay():
    """A loopback HTTP server answering /prometheus/api/v1/query, /alerts and /targets with
    the recorded answers of a real Prometheus (tests/data/prometheus/README.md): no Prometheus
    binary runs where the unit tests do. Yields its base URL and the replay."""
    from urllib.parse import parse_qs, urlsplit

    from mlops_stack.dashboard.replicas import REQUESTS_QUERY

    replay = PrometheusReplay()

    class Handler(QuietHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            if url.path == "/prometheus/api/v1/query":
                [query] = parse_qs(url.query)["query"]
                replay.asked.append(query)
                name = replay.requests if query == REQUESTS_QUERY else replay.query
            elif url.path == "/prometheus/api/v1/alerts":
                name = replay.alerts
            elif url.path == "/prometheus/api/v1/targets":
                name = replay.targets
            else:
                self.send_error(404)
                return
            body = (RECORDED_PROMETHEUS / f"{name}.json").read_bytes()
            self.send_response(400 if name == "query-bad" else 200)  # as Prometheus did
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with loopback_http(Handler) as url:
        yield f"{url}/prometheus", replay
