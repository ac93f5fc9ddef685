"""The challenger scores live traffic in shadow, off the request path, and its answers are logged.

A real embedded registry (MLflow on SQLite) holds a champion trained by the train flow and a
challenger made slow on purpose: a pipeline whose first step sleeps ``DELAY`` seconds (and can be
held shut by ``GATE``) before a real, different estimator. The client's latency, measured here,
must stay far below that delay; the challenger's answers must land in ``shadow_predictions``
keyed like the champion's rows and equal to the challenger's own predictions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from datetime import UTC, datetime

import mlflow
import numpy as np
import pandas as pd
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from mlops_stack import modelstore
from mlops_stack.data import load_dataset
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import PREDICTIONS, SHADOW_PREDICTIONS
from mlops_stack.names import Task
from mlops_stack.prediction_log.sinks import RedisStreamSink
from mlops_stack.prediction_log.spool import Spool
from mlops_stack.prediction_log.stream import StreamWriter
from mlops_stack.serving.app import create_app
from mlops_stack.serving.model import ModelHolder, shadow_mismatch
from mlops_stack.serving.schema import FeatureField
from mlops_stack.stack import Stack
from tests.support.champion import embedded_settings, train_champion
from tests.support.monitoring import Monitoring
from tests.support.servers import wait_for

DELAY = 1.0
"""Seconds the challenger's first step sleeps on every call: long enough that a loaded CI machine
(two cores, several test processes) cannot blur a request that waited for it with one that did
not."""
GATE = threading.Event()
"""Set: the challenger answers after DELAY. Cleared by a test: it waits until set again."""
GATE.set()


def hold_then_pass(frame: pd.DataFrame) -> pd.DataFrame:
    """The challenger's first step: slow on purpose, and held shut while GATE is cleared."""
    time.sleep(DELAY)
    GATE.wait(timeout=120)
    return frame


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """v1 champion (the train flow's logistic regression), v2 challenger (slow decision tree)."""
    settings = embedded_settings(tmp_path_factory.mktemp("shadow"), reload_poll_seconds=0.2)
    train_champion(settings)
    stack = Stack(settings)
    version = register_slow_challenger(stack)
    assert version == "2"
    stack.registry.make_challenger(version)
    yield settings, stack
    stack.close()


def register_slow_challenger(stack: Stack) -> str:
    """Log and register a pipeline: sleep, then the champion's preprocessing and a tree."""
    registry = stack.registry
    champion = registry.champion()
    assert champion is not None and champion.run_id is not None
    dataset = load_dataset(None, stack.settings.target_column)
    schema = modelstore.load_schema(champion.run_id)
    served = modelstore.load_pipeline(f"models:/{registry.model_name}/{champion.version}")
    preprocess = clone(served.steps[0][1])
    pipeline = Pipeline(
        [
            ("hold", FunctionTransformer(hold_then_pass)),
            ("preprocess", preprocess),
            ("model", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ]
    )
    pipeline.fit(dataset.features, dataset.labels)
    registry.use_experiment("shadow-challenger")
    with mlflow.start_run():
        uri = modelstore.log_pipeline(pipeline, dataset.features, schema, reference_rows=50, seed=0)
    return registry.register(uri)


@pytest.fixture(scope="module")
def features(registered) -> pd.DataFrame:
    settings, _ = registered
    return load_dataset(None, settings.target_column).features


@pytest.fixture(scope="module")
def models(registered):
    """The two logged models as scikit-learn loads them: what each must answer."""
    settings, _ = registered
    name = settings.model_name
    return (
        mlflow.sklearn.load_model(f"models:/{name}/1"),
        mlflow.sklearn.load_model(f"models:/{name}/2"),
    )


def rows_of(frame: pd.DataFrame) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for _, row in frame.iterrows()]


def shadow_rows(store: Monitoring, request_ids: set[str]) -> pd.DataFrame:
    query = sa.select(SHADOW_PREDICTIONS).where(SHADOW_PREDICTIONS.c.request_id.in_(request_ids))
    with store.monitoring_db.engine.connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


def champion_keys(store: Monitoring, request_ids: set[str]) -> set[tuple[str, int]]:
    query = sa.select(PREDICTIONS.c.request_id, PREDICTIONS.c.row).where(
        PREDICTIONS.c.request_id.in_(request_ids)
    )
    with store.monitoring_db.engine.connect() as connection:
        return {(rid, row) for rid, row in connection.execute(query).tuples()}


def metric(client: TestClient, line_start: str) -> float:
    """One sample of /metrics, e.g. ``mlops_shadow_dropped_total{reason="queue_full"}``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


def timed_post(client: TestClient, path: str, body: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, response.json()


def test_challenger_scores_in_shadow_and_the_client_never_waits_for_it(
    registered, features, models
):
    settings, stack = registered
    champion_model, challenger_model = models
    singles, batch = features.iloc[:30], features.iloc[30:40]
    with TestClient(create_app(Stack(settings))) as client:
        info = client.get("/model").json()
        assert info["version"] == "1" and info["shadow"]["version"] == "2"
        assert info["inference"]["path"] == "onnx"  # the champion; the challenger: sklearn

        latencies, answers, sent = [], [], {}
        for row in rows_of(singles):
            elapsed, answer = timed_post(client, "/predict", {"features": row})
            latencies.append(elapsed)
            answers.append(answer["probabilities"])
            assert answer["model"]["version"] == "1"
            sent[(answer["request_id"], 0)] = row
        for chunk in (batch.iloc[:5], batch.iloc[5:]):
            elapsed, answer = timed_post(client, "/predict/batch", {"rows": rows_of(chunk)})
            latencies.append(elapsed)
            assert answer["model"]["version"] == "1"
            answers += [p["probabilities"] for p in answer["predictions"]]
            for i, row in enumerate(rows_of(chunk)):
                sent[(answer["request_id"], i)] = row

        # the client waited for the champion only: 32 requests, each far below one DELAY
        assert max(latencies) < DELAY / 2, latencies
        assert sorted(latencies)[len(latencies) // 2] < DELAY / 10, latencies
        frame = pd.concat([singles, batch])
        positive = str(champion_model.classes_[1])
        champion_proba = champion_model.predict_proba(frame)[:, 1]
        challenger_proba = challenger_model.predict_proba(frame)[:, 1]
        got = np.array([a[positive] for a in answers])
        # the champion serves through its verified ONNX graph: float32, within the tolerance
        np.testing.assert_allclose(got, champion_proba, rtol=0, atol=settings.onnx_tolerance)
        assert np.abs(got - challenger_proba).max() > 0.05  # the two models do differ

        store = stack
        ids = {rid for rid, _ in sent}
        wait_for(lambda: len(shadow_rows(store, ids)) == 40, 60, "40 shadow rows")
        shadow = shadow_rows(store, ids)
        assert set(shadow["model_version"]) == {"2"}
        keys = list(zip(shadow["request_id"], shadow["row"], strict=True))
        wait_for(lambda: champion_keys(store, ids) == set(sent), 30, "the champion's 40 rows")
        assert set(keys) == set(sent) and len(keys) == 40
        # what the challenger answered in shadow is its own prediction for the row sent
        expected = challenger_model.predict_proba(pd.DataFrame([sent[k] for k in keys]))
        logged = np.array([p[positive] for p in shadow["probabilities"]])
        np.testing.assert_allclose(logged, expected[:, 1], rtol=0, atol=1e-12)
        assert list(shadow["prediction"]) == list(
            challenger_model.classes_[expected.argmax(axis=1)]
        )
        # its latency is its own, delay included; rows that arrived together shared one call
        assert shadow["latency_ms"].min() >= DELAY * 1000
        assert shadow["latency_ms"].nunique() < 32
        assert metric(client, 'mlops_shadow_predictions_total{version="2"}') == 40
        assert client.get("/model").json()["shadow"]["scored_rows"] == 40


def test_a_full_shadow_queue_drops_and_counts_instead_of_blocking(registered, features):
    settings, stack = registered
    small = settings.model_copy(update={"shadow_queue_rows": 3})
    rows = rows_of(features.iloc[:11])
    GATE.clear()  # the challenger will not finish its first call until the test says so
    try:
        with TestClient(create_app(Stack(small))) as client:
            assert client.get("/model").json()["shadow"]["version"] == "2"
            _, first = timed_post(client, "/predict", {"features": rows[0]})
            wait_for(
                lambda: client.get("/model").json()["shadow"]["queued_rows"] == 0,
                10,
                "the scorer to take the first row (and hang on the gate)",
            )
            latencies, ids = [], {first["request_id"]}
            for row in rows[1:]:
                elapsed, answer = timed_post(client, "/predict", {"features": row})
                latencies.append(elapsed)
                ids.add(answer["request_id"])
            # the scorer is stuck: 3 rows wait, 7 are dropped, and no request waited
            assert max(latencies) < DELAY / 2, latencies
            shadow = client.get("/model").json()["shadow"]
            assert (shadow["queued_rows"], shadow["dropped_rows"]) == (3, 7)
            assert metric(client, 'mlops_shadow_dropped_total{reason="queue_full"}') == 7
            assert metric(client, "mlops_shadow_queue_depth") == 3

            GATE.set()
            store = stack
            wait_for(lambda: len(shadow_rows(store, ids)) == 4, 30, "the 4 rows kept")
            assert metric(client, 'mlops_shadow_predictions_total{version="2"}') == 4
            assert client.get("/model").json()["shadow"]["queued_rows"] == 0
    finally:
        GATE.set()


def test_shadow_scoring_is_off_when_disabled(registered, features):
    settings, stack = registered
    off = settings.model_copy(update={"shadow_enabled": False})
    with TestClient(create_app(Stack(off))) as client:
        assert client.get("/model").json()["shadow"] is None
        _, answer = timed_post(client, "/predict", {"features": rows_of(features.iloc[:1])[0]})
        ids = {answer["request_id"]}
        wait_for(lambda: champion_keys(stack, ids), 30, "the champion's row")
        assert client.app.state.predictor.shadow.depth() == 0  # nothing was queued
        assert metric(client, 'mlops_shadow_predictions_total{version="2"}') == 0
    assert shadow_rows(stack, ids).empty


def test_a_challenger_that_cannot_answer_the_champions_rows_is_not_shadowed(registered):
    settings, stack = registered
    holder = ModelHolder(stack.registry, settings)
    assert holder.refresh() is True
    champion, challenger = holder.current, holder.shadow
    assert champion is not None and challenger is not None
    assert (champion.version, challenger.version) == ("1", "2")
    assert shadow_mismatch(champion, challenger) is None
    regression = dataclasses.replace(challenger, task=Task.REGRESSION)
    assert shadow_mismatch(champion, regression) == "it predicts regression, the champion " + (
        "classification"
    )
    extra = FeatureField("colour", "string", True)
    wider = dataclasses.replace(challenger, fields=[*challenger.fields, extra])
    assert shadow_mismatch(champion, wider) == (
        "it takes features the champion's rows lack: colour"
    )
    first = challenger.fields[0]
    retyped = dataclasses.replace(
        challenger, fields=[dataclasses.replace(first, dtype="string"), *challenger.fields[1:]]
    )
    assert shadow_mismatch(champion, retyped) == (
        f"features typed differently from the champion's: {first.name}"
    )


def test_a_promoted_challenger_is_never_champion_and_shadow_at_once(registered, monkeypatch):
    """The swap itself stops the shadow: no moment (a /model read, a request scored in shadow)
    sees v2 serving and v2 shadowing, even before the challenger alias is looked up again."""
    settings, stack = registered
    registry = stack.registry
    holder = ModelHolder(stack.registry, settings)
    assert holder.refresh() is True and (holder.version, holder.shadow_version) == ("1", "2")
    shadowed = holder.shadow
    monkeypatch.setattr(holder, "_refresh_shadow", lambda: None)  # only the champion's swap
    registry.promote("2")
    try:
        assert holder.refresh() is True
        assert holder.current is shadowed  # served as loaded: no second load of v2
        assert holder.shadow is None
    finally:
        registry.client.set_registered_model_alias(registry.model_name, "champion", "1")
        registry.make_challenger("2")


def test_a_challenger_that_fails_to_load_leaves_the_champion_serving(registered, tmp_path):
    settings, stack = registered
    registry = stack.registry
    broken = registry.client.create_model_version(
        registry.model_name, source=str(tmp_path / "no-model-here")
    )
    registry.make_challenger(str(broken.version))
    try:
        holder = ModelHolder(stack.registry, settings)
        assert holder.refresh() is True
        assert holder.version == "1" and holder.shadow is None
        registry.make_challenger("2")  # a loadable challenger again: picked up on the next look
        assert holder.refresh() is False  # the champion did not move ...
        assert holder.version == "1" and holder.shadow_version == "2"  # ... the shadow did
    finally:
        registry.make_challenger("2")


def test_promoting_the_challenger_makes_it_champion_and_ends_the_shadow(registered, features):
    settings, stack = registered
    registry = stack.registry
    row = rows_of(features.iloc[:1])[0]
    try:
        with TestClient(create_app(Stack(settings))) as client:
            before = client.get("/model").json()
            assert before["version"] == "1" and before["shadow"]["version"] == "2"
            registry.promote("2")
            after = wait_for(
                lambda: (info := client.get("/model").json())["version"] == "2" and info,
                30,
                "the predictor to serve v2",
            )
            assert after["shadow"] is None  # make_champion took the challenger alias away
            # the shadow's loaded model was served as is: no second load of v2
            assert after["loaded_at"] == before["shadow"]["loaded_at"]
            scored = metric(client, 'mlops_shadow_predictions_total{version="2"}')
            _, answer = timed_post(client, "/predict", {"features": row})
            assert answer["model"]["version"] == "2"
            ids = {answer["request_id"]}
            wait_for(lambda: champion_keys(stack, ids), 30, "v2's row as champion")
            assert client.app.state.predictor.shadow.depth() == 0
            assert metric(client, 'mlops_shadow_predictions_total{version="2"}') == scored
        assert shadow_rows(stack, ids).empty
    finally:
        registry.client.set_registered_model_alias(registry.model_name, "champion", "1")
        registry.make_challenger("2")


# --- the durable log path carries shadow records unchanged -----------------------------------


def shadow_record(request_id: str, version: str = "2", **changes) -> PredictionRecord:
    fields = {
        "request_id": request_id,
        "row": 0,
        "created_at": datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "model_name": "churn",
        "model_version": version,
        "features": {},
        "prediction": 1,
        "probabilities": {"0": 0.25, "1": 0.75},
        "latency_ms": 251.5,
        "shadow": True,
    }
    return PredictionRecord(**{**fields, **changes})


def test_the_spool_carries_shadow_records_unchanged(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.recover()
    records = [shadow_record("a"), shadow_record("a", shadow=False, features={"x": 1.5})]
    spool.append([record.to_json() for record in records])
    assert [PredictionRecord.from_json(line) for line in spool.peek(10)] == records
    spool.close()


def test_shadow_records_travel_the_redis_stream_into_shadow_predictions(
    stack, services, postgres_url, stream_name
):
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        monitoring_db_url=postgres_url,
        prediction_log_flush_seconds="0.05",
    )
    request = uuid.uuid4().hex
    champion = shadow_record(request, "1", shadow=False, features={"x": 1.5}, latency_ms=3.0)
    refused = shadow_record(request, "9" * 65)  # too long for model_version: PostgreSQL refuses
    shadows = [shadow_record(request, "2"), shadow_record(request, "3", prediction=0)]
    sink = RedisStreamSink(settings)
    sink.start()
    for item in [refused, champion, *shadows, shadows[0]]:  # v2's answer delivered twice
        sink.submit(item)
    client = redis.Redis.from_url(services.redis_url)
    wait_for(lambda: client.xlen(stream_name) == 5, 10, "5 entries in the stream")
    sink.stop()
    entry_of = {fields[b"record"]: entry for entry, fields in client.xrange(stream_name)}

    writer = StreamWriter(settings, consumer="writer-1")
    store = Monitoring(postgres_url)
    try:

        def drained() -> bool:
            writer.run_once(block_ms=100)
            return client.xlen(stream_name) == 0

        wait_for(drained, 20, "the writer to drain the stream")
        assert champion_keys(store, {request}) == {(request, 0)}
        stored = shadow_rows(store, {request}).sort_values("model_version")
        assert list(stored["model_version"]) == ["2", "3"]  # once per version
        for (_, row), expected in zip(stored.iterrows(), shadows, strict=True):
            assert row["prediction"] == expected.prediction
            assert row["probabilities"] == expected.probabilities
            assert row["latency_ms"] == expected.latency_ms
            assert row["created_at"] == expected.created_at
        # the refused shadow record is set aside under its own entry, not its champion twin's
        [(_, letter)] = client.xrange(f"{stream_name}:dead")
        assert letter[b"record"] == refused.to_json().encode()
        assert letter[b"source_id"] == entry_of[refused.to_json().encode()]
    finally:
        writer.close()
        store.dispose()
        client.close()
