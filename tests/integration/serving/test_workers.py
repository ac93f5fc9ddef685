"""`mlops serve api --workers 2` as a user starts it: /metrics counts every worker's requests.

One server for the module, in its own process with a temporary directory of its own (TMPDIR),
over a file-based MLflow store that has no champion when it starts: the first requests get 503
(real 5xx for the dashboard's error rate), then a champion is trained and both workers load it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from mlops_stack.flows.train import train_flow
from mlops_stack.settings import get_settings
from mlops_stack.stack import Stack
from tests.support.paths import REPO
from tests.support.servers import wait_for

N = 200  # /predict answered 200, over fresh connections from several threads
K = 20  # /predict answered 503, before a champion exists
SCRAPES = 5
THREADS = 4
EXAMPLE = (REPO / "examples" / "predict.json").read_bytes()
HEADERS = {"Content-Type": "application/json"}
STALE = 1000.0  # what an earlier start's files say: summed in, every figure would be off


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    tmp: Path  # the server's TMPDIR: its multiprocess directory is made under it
    stale: Path  # a directory an earlier start left behind

    def workers(self) -> list[int]:
        """The pids of the workers that finished starting, from their `predictor_started`."""
        pids = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "predictor_started":
                pids.append(json.loads(line)["pid"])
        return pids

    def directory(self) -> Path:
        """This start's multiprocess directory."""
        [directory] = [p for p in self.tmp.glob("mlops-metrics-*") if p != self.stale]
        return directory

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics as {(sample name, labels): value}."""
        answer = httpx.get(f"{self.base}/metrics", timeout=10)
        answer.raise_for_status()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }


def requests_of(samples: dict, status: str, route: str = "/predict") -> float:
    key = {("route", route), ("method", "POST"), ("status", status)}
    return samples.get(("mlops_http_requests_total", frozenset(key)), 0.0)


def plant_stale_directory(tmp: Path) -> Path:
    """What a server killed with SIGKILL leaves: its directory, with counts of its own."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    stale = tmp / f"mlops-metrics-{gone.pid}-earlier"
    stale.mkdir(parents=True)
    counters = MmapedDict(str(stale / f"counter_{gone.pid}.db"))
    key = mmap_key(
        "mlops_http_requests",
        "mlops_http_requests_total",
        ["route", "method", "status"],
        ["/predict", "POST", "200"],
        "HTTP requests answered, by route and status code.",
    )
    counters.write_value(key, STALE, 0.0)
    counters.close()
    gauges = MmapedDict(str(stale / f"gauge_livesum_{gone.pid}.db"))
    key = mmap_key(
        "mlops_prediction_log_queue_depth",
        "mlops_prediction_log_queue_depth",
        [],
        [],
        "Predictions answered but not yet handed on durably (memory and spool).",
    )
    gauges.write_value(key, STALE, 0.0)
    gauges.close()
    return stale


def predict_from_threads(base: str, total: int) -> list[int]:
    """``total`` POST /predict, each on a new connection, from THREADS threads at once."""

    def send(count: int) -> list[int]:
        return [
            httpx.post(f"{base}/predict", headers=HEADERS, content=EXAMPLE, timeout=30).status_code
            for _ in range(count)
        ]

    with ThreadPoolExecutor(THREADS) as pool:
        batches = pool.map(send, [total // THREADS] * THREADS)
    return [code for batch in batches for code in batch]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("workers")
    tmp = root / "tmp"
    stale = plant_stale_directory(tmp)
    settings_env = {
        "MLOPS_DATA_DIR": str(root / "mlops-data"),
        "MLOPS_CANDIDATES": "logistic_regression",
        "MLOPS_LATENCY_SAMPLES": "10",
        "MLOPS_RELOAD_POLL_SECONDS": "0.2",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MLOPS_")]:
            mp.delenv(key)
        for key, value in settings_env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        with Stack(get_settings()) as stack:  # the stores exist before two workers open them
            assert stack.registry.champion() is None
            stack.monitoring_db.ensure_schema()
        env = {**os.environ, "MLOPS_LOG_JSON": "true", "TMPDIR": str(tmp)}
        yield from serve(root, env, stale)
    get_settings.cache_clear()


def serve(root: Path, env: dict[str, str], stale: Path) -> Iterator[Server]:
    """Start the server, get K 503s, train a champion, wait for both workers to load it, get N
    200s; stop the server after the module's tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = root / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_stack.cli", "serve", "api"]
            + ["--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    running = Server(f"http://127.0.0.1:{port}", process, log, Path(env["TMPDIR"]), stale)

    def started() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        return len(set(running.workers())) == 2

    try:
        wait_for(started, 180, "both workers to start")
        assert predict_from_threads(running.base, K) == [503] * K
        train_flow()  # registers v1 as champion; each worker's reload loop picks it up
        ok = ("mlops_model_reloads_total", frozenset({("outcome", "ok")}))
        wait_for(lambda: running.scrape().get(ok) == 2, 120, "both workers to load v1")
        assert predict_from_threads(running.base, N) == [200] * N
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert "Traceback" not in log.read_text()
    assert not list(running.tmp.glob("mlops-metrics-*")), "the server removes its directory"


def test_every_scrape_counts_the_requests_of_both_workers(server):
    samples = {}
    for _ in range(SCRAPES):  # new connections: either worker may answer each
        samples = server.scrape()
        assert requests_of(samples, "200") == N
        assert requests_of(samples, "503") == K
        latency = frozenset({("route", "/predict")})
        assert samples[("mlops_http_request_seconds_count", latency)] == N + K
        assert samples[("mlops_http_request_seconds_bucket", latency | {("le", "+Inf")})] == N + K
        predicted = [v for (name, _), v in samples.items() if name == "mlops_predictions_total"]
        assert sum(predicted) == N
    # both workers answered: each one's own file holds part of the N
    per_worker = {}
    for pid in server.workers():
        merged = MultiProcessCollector.merge([str(server.directory() / f"counter_{pid}.db")])
        per_worker[pid] = requests_of(
            {(s.name, frozenset(s.labels.items())): s.value for m in merged for s in m.samples},
            "200",
        )
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == N


def test_files_an_earlier_start_left_are_not_counted_and_are_removed(server):
    assert not server.stale.exists(), "the dead server's directory is removed at start"
    assert server.directory() != server.stale
    samples = server.scrape()
    assert requests_of(samples, "200") == N  # not N + STALE
    assert samples[("mlops_prediction_log_queue_depth", frozenset())] < STALE
    # the most any live worker says (livemax): both log to their database, neither is degraded
    assert samples[("mlops_prediction_log_degraded", frozenset())] == 0


def test_the_dashboard_error_rate_reads_every_workers_answers(server):
    from mlops_stack.dashboard.replicas import error_rate

    rate = error_rate(server.base, None)  # one replica (an IP literal), two workers in it
    assert (rate.requests, rate.errors, rate.rate) == (N + K, K, K / (N + K))
    assert rate.answered_text() == "1 of 1 replica answered"


def test_a_killed_worker_keeps_its_counts_and_leaves_the_queue_depth_sum(server):
    """uvicorn replaces a killed worker; nothing tells the others, the scrape finds out."""
    victim = server.workers()[0]
    depth_file = server.directory() / f"gauge_livesum_{victim}.db"
    assert depth_file.exists()
    os.kill(victim, signal.SIGKILL)

    def forgotten() -> bool:
        server.scrape()  # the worker answering it removes the dead one's queue depth
        return not depth_file.exists()

    wait_for(forgotten, 30, "the killed worker's queue depth to leave the sum")
    assert requests_of(server.scrape(), "200") == N
    wait_for(lambda: len(set(server.workers())) == 3, 180, "uvicorn to start a new worker")
