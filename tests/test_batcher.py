"""The micro-batcher with a real trained model, app and prediction log (embedded SQLite sink).

Concurrency is deterministic without sleeps: requests started together with ``asyncio.gather``
all reach the batcher in one event-loop tick, and the batcher dispatches at the end of that
tick, so they share a batch; a spy on ``ServedModel.predict`` records each call's rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from asgi_lifespan import LifespanManager

from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.serving.app import create_app
from mlops_stack.serving.model import Answer, ServedModel
from mlops_stack.serving.predictor import Predictor
from mlops_stack.settings import Settings, get_settings
from mlops_stack.stack import Stack

from .conftest import mixed_table

DEADLINE = 30.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with one champion (no challenger: no shadow scoring calls the model)."""
    root = tmp_path_factory.mktemp("batcher")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLOPS_DATA_DIR": str(root / "mlops-data"),
            "MLOPS_CANDIDATES": "logistic_regression",
            "MLOPS_LATENCY_SAMPLES": "10",
            "MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.05",
            "MLOPS_MICROBATCH_ENABLED": "true",
        }.items():
            mp.setenv(key, value)
        mp.delenv("MLOPS_REDIS_URL", raising=False)
        get_settings.cache_clear()
        path = root / "customers.csv"
        mixed_table().to_csv(path, index=False)
        train_flow(
            TrainParameters.from_settings(get_settings(), data_path=str(path), target="churn")
        )
        yield get_settings(), pd.read_csv(path).drop(columns=["churn"])
    get_settings.cache_clear()


class Spy:
    """Records every ``ServedModel.predict`` call (its rows and thread); can make one call
    raise."""

    def __init__(self, original: Callable[[ServedModel, list[dict[str, Any]]], list[Answer]]):
        self.original = original
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.versions: list[str] = []
        self.fail_call: int | None = None

    def predict(self, model: ServedModel, rows: list[dict[str, Any]]) -> list[Answer]:
        index = len(self.calls)
        self.calls.append((threading.current_thread().name, list(rows)))
        self.versions.append(model.version)
        if index == self.fail_call:
            raise RuntimeError("the model failed")
        return self.original(model, rows)

    def sizes(self) -> list[int]:
        return [len(rows) for _, rows in self.calls]


@pytest.fixture
def spy(monkeypatch):
    spy = Spy(ServedModel.predict)
    monkeypatch.setattr(ServedModel, "predict", lambda model, rows: spy.predict(model, rows))
    return spy


def _json_row(row: pd.Series) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` on the loop (the app keeps running) until true, or fail."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {DEADLINE}s waiting for {what}"
        await asyncio.sleep(0.05)


Scenario = Callable[[Predictor, httpx.AsyncClient], Awaitable[Any]]


def _serve(settings: Settings, scenario: Scenario) -> Any:
    """Run ``scenario`` against the app, started and stopped with its lifespan."""
    app = create_app(Stack(settings))

    async def main() -> Any:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await scenario(app.state.predictor, client)

    return asyncio.run(main())


async def _answer_together(
    predictor: Predictor, requests: dict[str, list[dict[str, Any]]]
) -> dict[str, list[Answer]]:
    """What ``Predictor.answer`` (the routes' call) gives each request, all started at once."""
    model = predictor.model()
    started = time.perf_counter()
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(predictor.answer(rid, model, rows, started) for rid, rows in requests.items())
        ),
        DEADLINE,
    )
    return dict(zip(requests, answers, strict=True))


def test_mixed_rows_in_one_batch_get_their_own_answers_and_are_logged_once(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(11).iterrows()]
    requests = {f"single-{i}": [row] for i, row in enumerate(rows[:8])}
    requests["batch-0"] = rows[8:]
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    since = datetime.now(UTC)

    def logged() -> pd.DataFrame:
        frame = store.predictions_with_feedback(since=since)
        return frame[frame["request_id"].isin(requests)]

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        spy.calls.clear()
        answered = await _answer_together(predictor, requests)
        model = predictor.model()
        alone = {rid: [spy.original(model, [row])[0] for row in rs] for rid, rs in requests.items()}
        batches = predictor.metrics.registry.get_sample_value("mlops_microbatch_rows_count")
        # while the app runs: its log writer moves the rows from the spool into the database
        await _until(lambda: len(logged()) >= 11, "11 logged rows")
        return answered, alone, model.version, batches, logged()

    answered, alone, version, batches, frame = _serve(settings, scenario)

    assert spy.sizes() == [11]  # the 9 requests' 11 rows in ONE call
    assert batches == 1
    for rid, answers in answered.items():
        assert len(answers) == len(alone[rid])
        for got, want in zip(answers, alone[rid], strict=True):
            assert got.prediction == want.prediction, rid
            assert got.probabilities == pytest.approx(want.probabilities, rel=1e-9), rid
    predictions = {a.prediction for answers in answered.values() for a in answers}
    assert len(predictions) > 1  # the rows differ in their answers: a mix-up would show

    # every batched row logged exactly once, under its own request id, with its own features
    expected = sorted((rid, i) for rid, rs in requests.items() for i in range(len(rs)))
    assert sorted(zip(frame["request_id"], frame["row"], strict=True)) == expected
    for record in frame.to_dict("records"):
        rid, index = record["request_id"], record["row"]
        assert str(record["prediction"]) == str(answered[rid][index].prediction)
        assert record["model_version"] == version
        for name, value in requests[rid][index].items():
            assert (pd.isna(record[name]) and value is None) or record[name] == value, name
    store.dispose()


def test_concurrent_http_requests_each_get_their_own_request_id_and_answer(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(6).iterrows()]

    async def scenario(predictor: Predictor, client: httpx.AsyncClient) -> Any:
        spy.calls.clear()
        responses = await asyncio.gather(
            *(
                client.post("/predict", json={"features": row}, headers={"X-Request-ID": f"r{i}"})
                for i, row in enumerate(rows)
            )
        )
        model = predictor.model()
        return responses, [spy.original(model, [row])[0] for row in rows]

    responses, alone = _serve(settings, scenario)
    assert sum(spy.sizes()) == 6 and len(spy.calls) < 6  # some requests shared a call
    for i, (response, want) in enumerate(zip(responses, alone, strict=True)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_id"] == f"r{i}"
        assert body["prediction"] == want.prediction
        assert body["probabilities"] == pytest.approx(want.probabilities, rel=1e-9)


def test_a_failing_predict_fails_only_its_batch(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(5).iterrows()]

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        model = predictor.model()
        spy.calls.clear()
        spy.fail_call = 0
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(predictor.batcher.predict(model, [row]) for row in rows), return_exceptions=True
            ),
            DEADLINE,
        )
        after = await asyncio.wait_for(predictor.batcher.predict(model, rows[:2]), DEADLINE)
        return outcomes, after, model

    outcomes, after, model = _serve(settings, scenario)
    assert all(isinstance(o, RuntimeError) and str(o) == "the model failed" for o in outcomes)
    assert spy.sizes() == [5, 2]  # the failed batch was one call, the next one worked
    assert after == spy.original(model, rows[:2])


def test_disabled_scores_each_request_on_its_own(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(6).iterrows()]
    off = settings.model_copy(update={"microbatch_enabled": False})

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        spy.calls.clear()
        answered = await _answer_together(predictor, {f"r{i}": [row] for i, row in enumerate(rows)})
        batches = predictor.metrics.registry.get_sample_value("mlops_microbatch_rows_count")
        return answered, batches

    answered, batches = _serve(off, scenario)
    assert len(answered) == 6
    assert spy.sizes() == [1] * 6
    assert not batches


def test_batches_hold_at_most_max_rows_and_a_larger_request_is_scored_alone(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(15).iterrows()]
    small = settings.model_copy(update={"microbatch_max_rows": 4})
    requests = {f"single-{i}": [row] for i, row in enumerate(rows[:3])}
    requests["big"] = rows[9:]
    requests.update({f"single-{i}": [row] for i, row in enumerate(rows[3:9], start=3)})

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        spy.calls.clear()
        return await _answer_together(predictor, requests)

    answered = _serve(small, scenario)
    assert {rid: len(a) for rid, a in answered.items()} == {k: len(v) for k, v in requests.items()}
    # in arrival order: 3 single rows (the big request does not fit), the big one alone
    # (never split), then 4 and 2 single rows
    assert spy.sizes() == [3, 6, 4, 2]
    assert spy.calls[1][1] == rows[9:]


def test_requests_for_different_model_objects_never_share_a_batch(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(4).iterrows()]

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        old = predictor.model()
        new = dataclasses.replace(old, version="after-swap")  # what a hot swap hands out
        spy.calls.clear()
        calls = [
            predictor.batcher.predict(m, [r])
            for m, r in zip([old, new, old, new], rows, strict=True)
        ]
        return await asyncio.wait_for(asyncio.gather(*calls), DEADLINE), old.version

    answered, old_version = _serve(settings, scenario)
    assert len(answered) == 4
    assert spy.sizes() == [2, 2]  # one call per model object, in arrival order
    assert spy.versions == [old_version, "after-swap"]
    assert spy.calls[0][1] == [rows[0], rows[2]] and spy.calls[1][1] == [rows[1], rows[3]]
