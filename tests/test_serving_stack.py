"""The predictor as the stack runs it: predictions through a real Redis stream into PostgreSQL."""

from __future__ import annotations

import threading

import redis
from fastapi.testclient import TestClient

from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.prediction_log.stream import StreamWriter
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack

from .servers import wait_for


def _row(settings) -> dict[str, float]:
    from mlops_stack.data import load_dataset

    features = load_dataset(None, settings.target_column).features
    return {k: float(v) for k, v in features.iloc[0].items()}


def _stack_settings(stack, services, postgres_url: str, stream_name: str, **extra: str):
    """Settings as in the compose stack: Redis stream in front of a PostgreSQL database."""
    return stack(
        candidates="logistic_regression",
        redis_url=services.redis_url,
        monitoring_db_url=postgres_url,
        prediction_stream=stream_name,
        **extra,
    )


def test_postgres_down_under_traffic_loses_no_prediction(
    stack, services, postgres_url, stream_name
):
    settings = _stack_settings(stack, services, postgres_url, stream_name, log_flush_seconds="0.05")
    train_flow()
    store = MonitoringDB(postgres_url)
    store.migrate()
    stop = threading.Event()
    writer = threading.Thread(target=StreamWriter(settings, store).run_forever, args=(stop,))
    writer.start()
    body = {"features": _row(settings)}
    try:
        with TestClient(create_app(Stack(settings))) as client:
            for _ in range(50):
                assert client.post("/predict", json=body).status_code == 200
            wait_for(lambda: store.count_predictions() == 50, 30, "50 rows before the outage")

            with services.outage("pg") as start_again:
                ids = set()
                for i in range(150):
                    response = client.post("/predict", json=body)
                    assert response.status_code == 200
                    ids.add(response.json()["request_id"])
                    if i == 0:
                        # while Postgres is down, feedback is refused (503), not dropped silently
                        refused = client.post(
                            "/feedback",
                            json={"request_id": response.json()["request_id"], "label": 1},
                        )
                        assert refused.status_code == 503
                start_again()

            wait_for(
                lambda: store.count_predictions() == 200, 60, "all 200 rows after Postgres returned"
            )
            frame = store.predictions_with_feedback()
            assert ids <= set(frame["request_id"]) and frame["request_id"].is_unique
            assert client.get("/ready").json()["prediction_log"]["ok"] is True
    finally:
        stop.set()
        writer.join(timeout=30)
        store.dispose()


def test_redis_notice_swaps_the_model_before_the_next_poll(
    stack, services, postgres_url, stream_name
):
    settings = _stack_settings(
        stack,
        services,
        postgres_url,
        stream_name,
        model_events_channel=f"{stream_name}:events",
        reload_poll_seconds="3600",  # only the notice can trigger the swap
    )
    train_flow()
    train_flow()  # a tie: v2 is challenger
    body = {"features": _row(settings)}
    with TestClient(create_app(Stack(settings))) as client:
        assert client.post("/predict", json=body).json()["model"]["version"] == "1"
        listening = redis.Redis.from_url(services.redis_url)
        wait_for(
            lambda: listening.pubsub_numsub(settings.model_events_channel)[0][1] >= 1,
            30,
            "the predictor to subscribe to model notices",
        )
        Stack(settings).registry.promote(2)  # promoting publishes the notice itself
        wait_for(
            lambda: client.post("/predict", json=body).json()["model"]["version"] == "2",
            30,
            "the swap to v2 after the notice",
        )
        listening.close()
