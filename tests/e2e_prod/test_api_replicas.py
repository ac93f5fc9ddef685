"""The predictor's replicas behind nginx: requests spread over them, and one of them dying is
not seen by clients (nginx retries the next; routes.conf, docker-compose.prod.yml).

Short on purpose: the long runs under load (restarts, upgrades, crashes) are the chaos suite's.
Runs before test_prod.py (file order), whose rate-limit burst must come last.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import httpx

from tests.e2e_prod.conftest import REPO, compose
from tests.support.servers import wait_for

EXAMPLE = json.loads((REPO / "examples" / "predict.json").read_text())
REPLICAS = int(os.environ.get("MLOPS_API_REPLICAS", "2"))
RATE = 8.0
"""Requests per second of the load below: under nginx's per-key limit (20 r/s)."""


def _replicas() -> list[str]:
    return compose("ps", "-q", "api").stdout.split()


def _docker(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout + done.stderr


def _predict(client: httpx.Client, api_key: str, request_id: str) -> httpx.Response:
    headers = {"X-API-Key": api_key, "X-Request-ID": request_id}
    return client.post("/api/predict", json=EXAMPLE, headers=headers)


def test_requests_land_on_every_replica(https: httpx.Client, api_key: str):
    replicas = _replicas()
    assert len(replicas) == REPLICAS, compose("ps", "api").stdout
    ids = [f"spread-{uuid.uuid4().hex[:8]}-{n}" for n in range(20)]
    for request_id in ids:
        answer = _predict(https, api_key, request_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["request_id"] == request_id

    def served() -> dict[str, set[str]] | None:
        """Which ids each replica logged, once every id is in some replica's log."""
        logs = {c: _docker("logs", "--since", "5m", c) for c in replicas}
        per = {c: {i for i in ids if f'"{i}"' in text} for c, text in logs.items()}
        return per if set().union(*per.values()) == set(ids) else None

    per = wait_for(served, timeout=60, what="every request id in a replica's log")
    # 20 requests, each to a random replica: all on one would be a 1 in 500,000 chance
    assert all(per.values()), {c[:12]: len(i) for c, i in per.items()}


def test_a_replica_killed_under_load_costs_no_request(https_url: str, api_key: str):
    """kill -9 of one replica while requests flow at RATE/s: every one is answered 200, by the
    other replica (nginx retries a reset or refused connection there, and a dead address until
    Docker's DNS drops it). The killed one is started again for the tests after this one."""
    victim = _replicas()[0]
    statuses: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=https_url, verify=False, timeout=60) as client:
            due = time.monotonic()
            while not stop.is_set():
                try:
                    status: int | str = _predict(client, api_key, uuid.uuid4().hex).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                statuses.append(status)
                due += 1 / RATE
                time.sleep(max(0.0, due - time.monotonic()))  # the pace, not a synchronisation

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        wait_for(lambda: len(statuses) >= 10, timeout=60, what="traffic through nginx")
        _docker("kill", "--signal", "KILL", victim)
        after_kill = len(statuses)
        wait_for(
            lambda: len(statuses) >= after_kill + 40,
            timeout=120,
            what="40 answers with one replica dead",
        )
    finally:
        stop.set()
        sender.join(timeout=90)
        _docker("start", victim)
    assert statuses and all(s == 200 for s in statuses), statuses
    wait_for(
        lambda: _docker("inspect", "-f", "{{.State.Health.Status}}", victim).strip() == "healthy",
        timeout=300,
        what="the killed replica healthy again",
    )
