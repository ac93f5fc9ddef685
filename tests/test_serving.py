"""The predictor against a real embedded registry and monitoring database (SQLite)."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.prediction_log.records import PredictionRecord
from mlops_stack.serving.app import create_app
from mlops_stack.settings import get_settings
from mlops_stack.stack import Stack

from .conftest import mixed_table
from .servers import serving, wait_for


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with v1 (champion) and v2 (challenger) of a model on mixed-type data."""
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLOPS_DATA_DIR": str(root / "mlops-data"),
            "MLOPS_CANDIDATES": "logistic_regression",
            "MLOPS_LATENCY_SAMPLES": "10",
            "MLOPS_RELOAD_POLL_SECONDS": "0.2",
            "MLOPS_MAX_BATCH_ROWS": "50",
            "MLOPS_MAX_BODY_BYTES": "20000",
            "MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.05",
        }.items():
            mp.setenv(key, value)
        mp.delenv("MLOPS_REDIS_URL", raising=False)
        get_settings.cache_clear()
        path = root / "customers.csv"
        frame = mixed_table()
        frame.to_csv(path, index=False)
        params = TrainParameters.from_settings(get_settings(), data_path=str(path), target="churn")
        train_flow(params)
        train_flow(params)  # a tie: v2 stays challenger
        yield get_settings(), pd.read_csv(path).drop(columns=["churn"])
    get_settings.cache_clear()


@pytest.fixture
def client(trained):
    settings, _ = trained
    with TestClient(create_app(Stack(settings))) as test_client:
        yield test_client


def _json_row(row: pd.Series) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def test_answers_equal_the_logged_models_own_predictions(trained, client):
    settings, features = trained
    rows = features.head(40)
    logged = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    expected = logged.predict_proba(rows)
    expected_class = logged.predict(rows)
    batch = client.post("/predict/batch", json={"rows": [_json_row(r) for _, r in rows.iterrows()]})
    assert batch.status_code == 200, batch.text
    answers = batch.json()["predictions"]
    for i, (_, row) in enumerate(rows.iterrows()):
        single = client.post("/predict", json={"features": _json_row(row)}).json()
        for answer in (single, answers[i]):
            assert answer["prediction"] == expected_class[i]
            got = [answer["probabilities"][c] for c in ("no", "yes")]
            np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-12)
    assert batch.json()["model"] == {"name": settings.model_name, "version": "1"}


def test_request_id_is_taken_from_the_header_or_generated(client, trained):
    _, features = trained
    body = {"features": _json_row(features.iloc[0])}
    given = client.post("/predict", json=body, headers={"X-Request-ID": "abc-123"})
    assert given.json()["request_id"] == "abc-123" == given.headers["x-request-id"]
    generated = client.post("/predict", json=body)
    assert len(generated.json()["request_id"]) == 32
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


GOOD = {"age": 40.0, "income": 20000.0, "city": "paris", "plan": "basic"}


@pytest.mark.parametrize(
    ("features", "field", "reason"),
    [
        ({k: v for k, v in GOOD.items() if k != "plan"}, "plan", "Field required"),
        ({**GOOD, "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({**GOOD, "age": "forty"}, "age", "Input should be a valid number"),
        ({**GOOD, "city": 75001}, "city", "Input should be a valid string"),
        ({**GOOD, "age": None}, "age", "Input should be a valid number"),
        ({**GOOD, "plan": None}, "plan", "Input should be a valid string"),
        ({**GOOD, "age": True}, "age", "Input should be a valid number"),
        # PostgreSQL stores no NUL: a row holding one could be answered but never logged
        ({**GOOD, "plan": "basic\u0000"}, "plan", "Value error, NUL characters"),
        ({**GOOD, "city": "\x00"}, "city", "Value error, NUL characters"),
    ],
)
def test_bad_features_get_422_naming_the_field(client, features, field, reason):
    response = client.post("/predict", json={"features": features})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "features", field]
    assert error["msg"].startswith(reason)


def test_null_is_accepted_only_where_training_imputed(client):
    # income and city had missing values in training: the signature marks them optional
    response = client.post("/predict", json={"features": {**GOOD, "income": None, "city": None}})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(client, literal):
    body = json.dumps({"features": GOOD}).replace("40.0", literal)
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "features", "age"] and "finite" in error["msg"]


def test_every_bad_field_is_reported_at_once(client):
    response = client.post("/predict", json={"features": {"age": "x", "city": 1}})
    fields = {tuple(e["loc"][2:]) for e in response.json()["detail"]}
    assert fields == {("age",), ("city",), ("income",), ("plan",)}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ("not json", ["body"]),
        ("[1, 2]", ["body"]),
        ('{"rows": []}', ["body", "features"]),
    ],
)
def test_malformed_bodies_get_422(client, body, loc):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][: len(loc)] == loc


def test_batch_bounds(client):
    empty = client.post("/predict/batch", json={"rows": []})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "rows"]
    too_many = client.post("/predict/batch", json={"rows": [GOOD] * 51})
    assert too_many.status_code == 422
    assert "at most 50" in too_many.json()["detail"][0]["msg"]
    bad_row = client.post("/predict/batch", json={"rows": [GOOD, {**GOOD, "age": "x"}]})
    assert bad_row.json()["detail"][0]["loc"] == ["body", "rows", 1, "age"]


def test_body_size_is_bounded(client):
    big = {"rows": [GOOD] * 40, "padding": "x" * 30000}
    response = client.post("/predict/batch", json=big)
    assert response.status_code == 413
    assert "larger than 20000 bytes" in response.json()["detail"]


def test_feedback_is_joined_to_predictions_and_unknown_ids_reported(trained, client):
    settings, _ = trained
    first = client.post("/predict", json={"features": GOOD}).json()
    batch = client.post("/predict/batch", json={"rows": [GOOD, GOOD]}).json()
    one = client.post("/feedback", json={"request_id": first["request_id"], "label": "yes"})
    assert one.status_code == 200 and one.json() == {"accepted": 1, "unknown": []}
    many = client.post(
        "/feedback",
        json={
            "items": [
                {"request_id": batch["request_id"], "row": 1, "label": "no"},
                {"request_id": "never-seen", "label": "no"},
            ]
        },
    )
    assert many.status_code == 200
    assert many.json() == {"accepted": 1, "unknown": [{"request_id": "never-seen", "row": 0}]}
    nothing = client.post("/feedback", json={"request_id": "never-seen", "label": "no"})
    assert nothing.status_code == 404
    bad_label = client.post("/feedback", json={"request_id": first["request_id"], "label": "maybe"})
    assert bad_label.status_code == 422 and bad_label.json()["detail"][0]["loc"] == [
        "body",
        "label",
    ]

    store = MonitoringDB(settings.resolved_monitoring_db_url)

    def joined() -> dict | None:
        frame = store.predictions_with_feedback()
        labelled = frame[frame["label"].notna()]
        return {(r.request_id, r.row): r.label for r in labelled.itertuples()} or None

    got = wait_for(
        lambda: (j := joined()) and len(j) >= 2 and j,
        30,
        "predictions and their labels in the database",
    )
    assert got[(first["request_id"], 0)] == "yes"
    assert got[(batch["request_id"], 1)] == "no"
    store.dispose()


def test_feedback_waits_for_rows_another_worker_answered(trained, client):
    """A row answered by another worker or replica is unknown to this process until the log
    writer puts it in the database: feedback sent in between is accepted once it is there, not
    refused. Here the row is written only after /feedback has looked once and found nothing."""
    settings, _ = trained
    predictor = client.app.state.predictor
    looked = threading.Event()
    known = predictor.known

    def looking(keys):
        found = known(keys)
        looked.set()
        return found

    predictor.known = looking
    answered = PredictionRecord(
        request_id="other-worker-1",
        row=0,
        created_at=datetime.now(UTC),
        model_name=settings.model_name,
        model_version="1",
        features=GOOD,
        prediction="no",
        probabilities=None,
        latency_ms=1.0,
    )
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    write = lambda: looked.wait(30) and store.write_predictions([answered])  # noqa: E731
    writer = threading.Thread(target=write)
    writer.start()
    try:
        response = client.post("/feedback", json={"request_id": "other-worker-1", "label": "yes"})
    finally:
        writer.join()
        store.dispose()
    assert looked.is_set()
    assert response.status_code == 200 and response.json() == {"accepted": 1, "unknown": []}


def test_every_answered_row_is_logged(trained, client):
    settings, features = trained
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    before = store.count_predictions()
    rows = [_json_row(r) for _, r in features.head(7).iterrows()]
    for row in rows[:3]:
        assert client.post("/predict", json={"features": row}).status_code == 200
    assert client.post("/predict/batch", json={"rows": rows[3:]}).status_code == 200
    wait_for(lambda: store.count_predictions() == before + 7, 30, "7 logged rows")
    logged = store.predictions_with_feedback().tail(4)
    assert list(logged["row"]) == [0, 1, 2, 3]
    assert logged["model_version"].eq("1").all()
    store.dispose()


def test_health_ready_model_and_metrics(trained, client):
    settings, _ = trained
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model"]["version"] == "1" and ready.json()["prediction_log"]["ok"]
    info = client.get("/model").json()
    assert info["version"] == "1" and info["metrics"]["roc_auc"] > 0.8
    assert {f["name"]: f["nullable"] for f in info["features"]} == {
        "age": False,
        "income": True,
        "city": True,
        "plan": False,
    }
    client.post("/predict", json={"features": GOOD})
    client.post("/predict", json={"features": {}})
    text = client.get("/metrics").text
    assert 'mlops_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'mlops_http_requests_total{method="POST",route="/predict",status="422"}' in text
    assert 'mlops_predictions_total{model_version="1"' in text
    assert "mlops_prediction_log_queue_depth" in text
    assert "mlops_http_request_seconds_bucket" in text
    docs = client.get("/openapi.json").json()
    body = docs["components"]["schemas"]["Features"]["properties"]
    assert set(body) == {"age", "income", "city", "plan"}
    assert client.get("/docs").status_code == 200


def _schema(docs: dict, ref_or_schema: dict) -> dict:
    """A schema with its ``$ref`` followed into the document's components."""
    ref = ref_or_schema.get("$ref")
    return docs["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


@pytest.mark.parametrize(
    ("method", "path", "statuses", "fields"),
    [
        ("post", "/predict", {200, 400, 413, 415, 422, 503}, {"request_id", "model", "prediction"}),
        (
            "post",
            "/predict/batch",
            {200, 400, 413, 415, 422, 503},
            {"request_id", "model", "predictions"},
        ),
        ("post", "/feedback", {200, 400, 404, 413, 415, 422, 503}, {"accepted", "unknown"}),
        ("get", "/ready", {200, 400, 503}, {"ready", "model", "prediction_log", "registry"}),
        ("get", "/model", {200, 400, 503}, {"name", "version", "metrics", "classes", "features"}),
    ],
)
def test_openapi_documents_the_answers(client, method, path, statuses, fields):
    docs = client.get("/openapi.json").json()
    responses = docs["paths"][path][method]["responses"]
    assert {int(code) for code in responses} >= statuses
    for code in statuses:
        schema = _schema(docs, responses[str(code)]["content"]["application/json"]["schema"])
        assert schema["properties"], f"{method} {path} {code} has no documented body"
    ok = _schema(docs, responses["200"]["content"]["application/json"]["schema"])
    assert fields <= set(ok["properties"])


def test_openapi_documents_the_feedback_body(client):
    docs = client.get("/openapi.json").json()
    body = docs["paths"]["/feedback"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    item, batch = (_schema(docs, s) for s in schema["anyOf"])
    assert body["required"] and set(item["required"]) == {"request_id", "label"}
    assert _schema(docs, batch["properties"]["items"]["items"]) == item
    # documented, yet still validated by hand: the 422 names the field, not the union member
    response = client.post("/feedback", json={"request_id": "r"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "label"]]


def test_no_champion_means_503_not_500(stack):
    settings = stack()
    with TestClient(create_app(Stack(settings))) as empty:
        response = empty.post("/predict", json={"features": GOOD})
        assert response.status_code == 503 and "mlops train" in response.json()["detail"]
        assert empty.get("/ready").status_code == 503
        assert empty.get("/health").status_code == 200


def test_promotion_under_traffic_fails_no_request_and_switches_version(trained):
    settings, features = trained
    registry = Stack(settings).registry
    rows = [{"features": _json_row(r)} for _, r in features.head(20).iterrows()]
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic(base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            i = 0
            while not stop.is_set():
                response = http.post("/predict", json=rows[i % len(rows)])
                i += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    seen.append(response.json()["model"]["version"])

    try:
        with serving(create_app(Stack(settings))) as base:
            workers = [threading.Thread(target=traffic, args=(base,)) for _ in range(3)]
            for worker in workers:
                worker.start()
            wait_for(lambda: len(seen) >= 30, 30, "traffic on v1")
            registry.promote(2)
            wait_for(lambda: seen[-1:] == ["2"] and seen.count("2") >= 30, 60, "answers from v2")
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
    finally:
        stop.set()
        registry.rollback()  # leave v1 champion
    assert failures == []
    assert seen[0] == "1" and seen[-1] == "2"
    switch = seen.index("2")
    assert len(seen) > switch + 30 and "1" in seen[:switch]


def test_json_logs_carry_the_request_id_on_every_request_line(client, capsys):
    import logging

    from mlops_stack.logs import configure_logging

    configure_logging("INFO", json=True)
    try:
        client.get("/health")  # probes log at debug: not in the lines below
        client.post("/predict", json={"features": GOOD}, headers={"X-Request-ID": "trace-me"})
        client.post("/predict", json={"features": {}}, headers={"X-Request-ID": "trace-bad"})
    finally:
        for logger in (logging.getLogger(), logging.getLogger("mlops_stack")):
            logger.handlers = [h for h in logger.handlers if h.get_name() != "mlops-stack"]
        logging.getLogger("mlops_stack").propagate = True
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    requests = [line for line in lines if line["event"] == "request"]
    assert {(r["request_id"], r["status"]) for r in requests} == {
        ("trace-me", 200),
        ("trace-bad", 422),
    }
    assert all("timestamp" in r and r["level"] == "info" for r in requests)


def test_with_api_keys_the_predictor_asks_for_one_and_logs_who_called(trained):
    from mlops_stack.serving.access import digest, new_api_key

    settings, features = trained
    key = new_api_key()
    keyed = settings.model_copy(update={"api_keys": f"ci-client:{digest(key)}"})
    row = {"features": _json_row(features.iloc[0])}
    with TestClient(create_app(Stack(keyed))) as keyed_client:
        assert keyed_client.post("/predict", json=row).status_code == 401
        assert keyed_client.get("/model").status_code == 401
        answer = keyed_client.post("/predict", json=row, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text
        assert keyed_client.get("/health").status_code == 200
        assert keyed_client.get("/metrics").status_code == 200  # scrapers on the network
        schema = keyed_client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
