"""The micro-batcher with a real trained model, app and prediction log (embedded SQLite sink).

Concurrency is made deterministic without sleeps: a spy on ``ServedModel.predict`` holds the
first batch on the scoring thread until the test has seen the next requests queue up behind it
(polled with a deadline), so those requests are known to share the next batch.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
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
from .servers import wait_for

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
            "MLOPS_LOG_FLUSH_SECONDS": "0.05",
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
    """Records every ``ServedModel.predict`` call (its rows and thread); can hold the first
    call until released and make one call raise."""

    def __init__(self, original: Callable[[ServedModel, list[dict[str, Any]]], list[Answer]]):
        self.original = original
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.release = threading.Event()
        self.hold_first = False
        self.fail_call: int | None = None

    def predict(self, model: ServedModel, rows: list[dict[str, Any]]) -> list[Answer]:
        index = len(self.calls)
        self.calls.append((threading.current_thread().name, list(rows)))
        if index == 0 and self.hold_first:
            assert self.release.wait(DEADLINE), "the test never released the first batch"
        if index == self.fail_call:
            raise RuntimeError("the model failed")
        return self.original(model, rows)


@pytest.fixture
def spy(monkeypatch):
    spy = Spy(ServedModel.predict)
    monkeypatch.setattr(ServedModel, "predict", lambda model, rows: spy.predict(model, rows))
    return spy


def _json_row(row: pd.Series) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


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


async def _post_behind_held_batch(
    predictor: Predictor,
    client: httpx.AsyncClient,
    spy: Spy,
    requests: list[tuple[str, str, dict[str, Any]]],
) -> list[httpx.Response]:
    """One request whose batch is held on the scoring thread, then ``requests`` (request id,
    path, body), which queue up behind it and are released together."""
    spy.calls.clear()
    spy.hold_first = True
    first = asyncio.create_task(client.post("/predict", json=requests[0][2]))
    await _until(lambda: len(spy.calls) == 1, "the first batch on the scoring thread")
    tasks = [
        asyncio.create_task(client.post(path, json=body, headers={"X-Request-ID": rid}))
        for rid, path, body in requests
    ]
    await _until(lambda: predictor.batcher.queued() == len(requests), "the requests to queue")
    spy.release.set()
    responses = await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
    assert (await first).status_code == 200
    return responses


def test_mixed_rows_in_one_batch_get_their_own_answers_and_are_logged_once(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(11).iterrows()]
    requests = [(f"single-{i}", "/predict", {"features": row}) for i, row in enumerate(rows[:8])]
    requests.append(("batch-0", "/predict/batch", {"rows": rows[8:]}))
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    before = store.count_predictions()

    async def scenario(predictor: Predictor, client: httpx.AsyncClient) -> Any:
        responses = await _post_behind_held_batch(predictor, client, spy, requests)
        model = predictor.model()
        alone = [spy.original(model, [row])[0] for row in rows]  # one by one, unbatched
        metrics = predictor.metrics.registry
        batches = metrics.get_sample_value("mlops_microbatch_rows_count")
        return responses, alone, model.version, batches

    responses, alone, version, batches = _serve(settings, scenario)

    # the 9 requests (11 rows) were scored in ONE call, after the held first one
    assert [len(rows) for _, rows in spy.calls] == [1, 11]
    assert {thread for thread, _ in spy.calls} == {"microbatch_0"}
    assert batches == 2
    answered: dict[tuple[str, int], Any] = {}
    for (rid, _path, _), response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_id"] == rid
        assert body["model"]["version"] == version
        for index, answer in enumerate(body.get("predictions") or [body]):
            answered[(rid, index)] = answer
    expected = {
        **{(f"single-{i}", 0): alone[i] for i in range(8)},
        **{("batch-0", i): alone[8 + i] for i in range(3)},
    }
    assert answered.keys() == expected.keys()
    for key, (prediction, proba, _) in expected.items():
        assert answered[key]["prediction"] == prediction, key
        assert answered[key]["probabilities"] == pytest.approx(proba, rel=1e-9), key
    assert len({a["prediction"] for a in answered.values()}) > 1  # rows that differ in answer

    # every batched row logged exactly once, under its own request id, with its own features
    wait_for(lambda: store.count_predictions() >= before + 12, DEADLINE, "12 logged rows")
    logged = store.predictions_with_feedback()
    logged = logged[logged["request_id"].isin({rid for rid, _ in expected})]
    assert sorted(zip(logged["request_id"], logged["row"], strict=True)) == sorted(expected)
    sent = {
        **{(f"single-{i}", 0): rows[i] for i in range(8)},
        **{("batch-0", i): rows[8 + i] for i in range(3)},
    }
    for record in logged.to_dict("records"):
        key = (record["request_id"], record["row"])
        assert str(record["prediction"]) == str(answered[key]["prediction"])
        assert record["model_version"] == version
        for name, value in sent[key].items():
            assert (pd.isna(record[name]) and value is None) or record[name] == value, name
    store.dispose()


def test_a_failing_predict_fails_only_its_batch(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(5).iterrows()]

    async def scenario(predictor: Predictor, _client: httpx.AsyncClient) -> Any:
        model = predictor.model()
        spy.hold_first, spy.fail_call = True, 1
        first = asyncio.create_task(predictor.batcher.predict(model, rows[:1]))
        await _until(lambda: len(spy.calls) == 1, "the first batch on the scoring thread")
        failing = [asyncio.create_task(predictor.batcher.predict(model, [row])) for row in rows]
        await _until(lambda: predictor.batcher.queued() == len(rows), "the requests to queue")
        spy.release.set()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*failing, return_exceptions=True), DEADLINE
        )
        after = await asyncio.wait_for(predictor.batcher.predict(model, rows[:2]), DEADLINE)
        return await first, outcomes, after, model

    first, outcomes, after, model = _serve(settings, scenario)
    assert len(first) == 1
    assert all(isinstance(o, RuntimeError) and str(o) == "the model failed" for o in outcomes)
    assert [len(rows) for _, rows in spy.calls] == [1, 5, 2]  # the failed batch was one call
    assert after == spy.original(model, rows[:2])


def test_disabled_scores_each_request_on_its_own(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(6).iterrows()]
    off = settings.model_copy(update={"microbatch_enabled": False})

    async def scenario(predictor: Predictor, client: httpx.AsyncClient) -> Any:
        spy.calls.clear()
        responses = await asyncio.gather(
            *(client.post("/predict", json={"features": row}) for row in rows)
        )
        return responses, predictor.metrics.registry.get_sample_value("mlops_microbatch_rows_count")

    responses, batches = _serve(off, scenario)
    assert all(r.status_code == 200 for r in responses)
    assert [len(rows) for _, rows in spy.calls] == [1] * 6
    assert {thread for thread, _ in spy.calls} == {threading.main_thread().name}  # the loop's
    assert not batches


def test_batches_hold_at_most_max_rows_and_a_larger_request_is_scored_alone(trained, spy):
    settings, features = trained
    rows = [_json_row(r) for _, r in features.head(15).iterrows()]
    small = settings.model_copy(update={"microbatch_max_rows": 4})
    requests = [(f"single-{i}", "/predict", {"features": row}) for i, row in enumerate(rows[:9])]
    requests.insert(3, ("big", "/predict/batch", {"rows": rows[9:]}))

    async def scenario(predictor: Predictor, client: httpx.AsyncClient) -> Any:
        return await _post_behind_held_batch(predictor, client, spy, requests)

    responses = _serve(small, scenario)
    assert all(r.status_code == 200 for r in responses)
    sizes = [len(rows) for _, rows in spy.calls[1:]]
    assert sum(sizes) == 15
    assert sizes.count(6) == 1 and all(size <= 4 for size in sizes if size != 6)
    assert [rows for _, rows in spy.calls[1:] if len(rows) == 6] == [rows[9:]]
    assert len(sizes) >= 4  # 9 single rows in batches of 4 at most, and the big one alone
