"""The predictor as the stack runs it: predictions through a real Redis stream into PostgreSQL,
and the promise of its 200: every answered row is durable (in the stream or the spool) before
the answer, through a SIGKILL, a Redis outage or hang, and 503 when nothing can take the rows."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import mlops_stack
from mlops_stack.flows.train import train_flow
from mlops_stack.prediction_log.stream import StreamWriter
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack
from tests.support.monitoring import Monitoring
from tests.support.paths import REPO
from tests.support.servers import free_port, wait_for


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
    settings = _stack_settings(
        stack, services, postgres_url, stream_name, prediction_log_flush_seconds="0.05"
    )
    train_flow()
    store = Monitoring(postgres_url)
    store.migrate()
    stop = threading.Event()
    writer = threading.Thread(
        target=StreamWriter(settings, store.predictions).run_forever, args=(stop,)
    )
    writer.start()
    body = {"features": _row(settings)}
    try:
        with TestClient(create_app(Stack(settings))) as client:
            for _ in range(50):
                assert client.post("/predict", json=body).status_code == 200
            wait_for(
                lambda: store.predictions.count_predictions() == 50, 30, "50 rows before the outage"
            )

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
                lambda: store.predictions.count_predictions() == 200,
                60,
                "all 200 rows after Postgres returned",
            )
            frame = store.monitor_store.predictions_with_feedback()
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


# --- durable before the answer (issue #15) ----------------------------------------------------

SOURCE = str(Path(mlops_stack.__file__).resolve().parents[1])  # the code under test, not a copy
EXAMPLE = (REPO / "examples" / "predict.json").read_bytes()
JSON = {"Content-Type": "application/json"}


def _stream_settings(stack, services, stream_name: str):
    """The test Redis's stream in front of the embedded SQLite store (only the stream matters)."""
    return stack(
        candidates="logistic_regression",
        redis_url=services.redis_url,
        prediction_stream=stream_name,
    )


@contextmanager
def _api(root: Path, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mlops serve api` in its own process, with this test's MLOPS_* environment; yields its
    base URL and process once /health answers. Stopped (if still alive) on the way out."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SOURCE, "MLOPS_LOG_JSON": "true", "TMPDIR": str(root)}
    log = root / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_stack.cli", "serve", "api", "--port", str(port)]
            + ["--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/ready", timeout=5).json()["model"]["version"] is not None
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 180, "the predictor to serve the champion")
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def _stream_ids(redis_url: str, stream: str) -> set[str]:
    """Request ids in the stream; none while Redis does not answer (yet)."""
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(stream)
    except redis.ConnectionError:
        return set()
    finally:
        client.close()
    return {json.loads(fields[b"record"])["request_id"] for _, fields in entries}


def _spool_ids(settings) -> set[str]:
    """Request ids in every spool segment, whatever its state (.part, .jsonl, .replay-*)."""
    ids = set()
    for path in (Path(settings.data_dir) / "spool").glob("[0-9]*"):
        for line in path.read_text().splitlines():
            ids.add(json.loads(line)["request_id"])
    return ids


def _metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    families = text_string_to_metric_families(text)
    [value] = [sample.value for f in families for sample in f.samples if sample.name == name]
    return value


def test_kill_9_right_after_answers_loses_no_answered_row(stack, services, stream_name, tmp_path):
    """Every request answered 200 before a SIGKILL is in the stream or the spool."""
    settings = _stream_settings(stack, services, stream_name)
    train_flow()
    answered: set[str] = set()
    lock, stop = threading.Lock(), threading.Event()

    def client(worker: int, base: str) -> None:
        with httpx.Client(base_url=base, headers=JSON, timeout=30) as http:
            for n in range(100_000):
                if stop.is_set():
                    return
                request_id = f"k9-{worker}-{n}"
                try:
                    path = "/predict" if n % 5 else "/predict/batch"
                    body = EXAMPLE if n % 5 else _batch(EXAMPLE, 3)
                    answer = http.post(path, content=body, headers={"X-Request-ID": request_id})
                except httpx.HTTPError:
                    return  # the server died under this request: it was never answered
                if answer.status_code == 200:
                    with lock:
                        answered.add(request_id)

    with _api(tmp_path) as (base, process):
        clients = [threading.Thread(target=client, args=(i, base)) for i in range(8)]
        for thread in clients:
            thread.start()
        wait_for(lambda: len(answered) >= 300, 120, "300 answered requests")
        process.kill()  # SIGKILL, with 8 clients in flight
        process.wait(timeout=30)
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    logged = _stream_ids(services.redis_url, stream_name) | _spool_ids(settings)
    lost = answered - logged
    assert not lost, f"{len(lost)} of {len(answered)} answered requests are not logged"


def _batch(example: bytes, rows: int) -> bytes:
    features = json.loads(example)["features"]
    return json.dumps({"rows": [features] * rows}).encode()


def test_redis_down_answers_from_the_spool_ready_200_degraded_then_replays(stack, tmp_path):
    """Two workers, Redis absent: 200s, rows in the spool, /ready 200 with prediction_log.ok
    false and the gauge 1 (multiprocess mode); Redis back: the spool reaches the stream."""
    port = free_port()  # nothing listens there yet
    redis_url = f"redis://127.0.0.1:{port}/0"
    settings = stack(candidates="logistic_regression", redis_url=redis_url)
    train_flow()
    with _api(tmp_path, workers=2) as (base, _process):
        ids = set()
        for _ in range(20):
            answer = httpx.post(f"{base}/predict", content=EXAMPLE, headers=JSON, timeout=30)
            assert answer.status_code == 200, answer.text
            ids.add(answer.json()["request_id"])
        assert ids <= _spool_ids(settings)
        ready = httpx.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["ready"] is True and body["prediction_log"]["ok"] is False
        assert "degraded" in body["prediction_log"]["detail"]
        wait_for(lambda: _metric(base, "mlops_prediction_log_degraded") == 1, 30, "gauge 1")

        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: ids <= _stream_ids(redis_url, settings.prediction_stream),
                60,
                "the spooled rows in the stream",
            )
            wait_for(lambda: _metric(base, "mlops_prediction_log_degraded") == 0, 60, "gauge 0")
            assert httpx.get(f"{base}/ready", timeout=10).json()["prediction_log"]["ok"] is True
            answer = httpx.post(f"{base}/predict", content=EXAMPLE, headers=JSON, timeout=30)
            wait_for(
                lambda: (
                    answer.json()["request_id"]
                    in _stream_ids(redis_url, settings.prediction_stream)
                ),
                10,
                "a new answer in the stream",
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def _black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers (a Redis that hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_a_redis_that_hangs_costs_one_timeout_not_one_per_request(stack):
    with _black_hole() as port:
        settings = stack(candidates="logistic_regression", redis_url=f"redis://127.0.0.1:{port}")
        train_flow()
        with TestClient(create_app(Stack(settings))) as client:
            took = []
            for _ in range(20):
                started = time.perf_counter()
                assert client.post("/predict", content=EXAMPLE, headers=JSON).status_code == 200
                took.append(time.perf_counter() - started)
            ready = client.get("/ready")
        assert sum(t > 0.4 for t in took) <= 1, took  # the first may wait for the timeout
        assert sorted(took)[10] < 0.2, took
        assert ready.status_code == 200 and ready.json()["prediction_log"]["ok"] is False
        assert len(_spool_ids(settings)) == 20


@pytest.mark.parametrize("sink", ["redis", "database"])
def test_nothing_can_take_rows_503_and_not_ready(stack, sink):
    """Redis down (or no Redis: the embedded sink) and the spool unwritable: 503, never 200."""
    extra = {"redis_url": f"redis://127.0.0.1:{free_port()}"} if sink == "redis" else {}
    settings = stack(candidates="logistic_regression", **extra)
    train_flow()
    Path(settings.data_dir, "spool").write_text("a file where the spool directory should be")
    with TestClient(create_app(Stack(settings))) as client:
        for path, body in [("/predict", EXAMPLE), ("/predict/batch", _batch(EXAMPLE, 2))]:
            answer = client.post(path, content=body, headers=JSON)
            assert answer.status_code == 503, answer.text
            assert "prediction log is unavailable" in answer.json()["detail"]
            assert "nothing was logged" in answer.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["prediction_log"]["ok"] is False
        assert "spool cannot be written" in ready.json()["prediction_log"]["detail"]
        metrics = client.get("/metrics").text
        assert "mlops_predictions_total{" not in metrics  # nothing answered, nothing counted


def test_redis_up_and_the_spool_unwritable_is_ready(stack, services, stream_name):
    settings = _stream_settings(stack, services, stream_name)
    train_flow()
    Path(settings.data_dir, "spool").write_text("a file where the spool directory should be")
    with TestClient(create_app(Stack(settings))) as client:
        answer = client.post("/predict", content=EXAMPLE, headers=JSON)
        assert answer.status_code == 200
        assert answer.json()["request_id"] in _stream_ids(services.redis_url, stream_name)
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["prediction_log"]["ok"] is True
