"""The loop closes inside the compose stack, under load, without a failed request.

A background load sends fresh rows through nginx at no less than ``LOAD_RATE`` requests a
second for the whole test, recording every answer's status and version. Meanwhile a concept
shift arrives: fresh rows whose label follows a moved boundary of ``worst radius`` (+1 std,
``synthetic.ConceptShift``), labelled through ``/api/feedback``. Then the monitor deployment runs
(as Prefect's "run" button does) and the test checks, in this order: an alert opens -> a retrain
flow run completes in Prefect -> the gate promotes the retrained version (MLflow alias and the
version's gate decision) -> the predictor serves it -> `mlops rollback` under the same load
brings the old version back -> no answer of the whole sequence was non-2xx, and every one named
its version.

The stack runs with retraining on (docker-compose.yml's default) and the dev stage's env file
(compose-e2e.sh: cool-down 0); the monitor's default window (5000 rows) holds every row the
test sends, the labelled ones included. This module runs after the others
(conftest.py): it changes the champion. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer

from mlops_stack.synthetic import ConceptShift, RowGenerator
from tests.e2e.conftest import REPO, psql
from tests.e2e.test_stack import MODEL

LOAD_RATE = 20.0  # requests a second through nginx, at least (the "Done when")
LOAD_THREADS = 6  # a slow answer (the worker training on the same 2 cores) does not stall it
PACE = 1.25  # each thread aims above its share, so that slow spells still average LOAD_RATE
BACKLOG_S = 2.0  # how far behind its schedule a thread may catch up (in a burst)
LABELLED_ROWS = 800  # past MLOPS_RETRAIN_MIN_LABELLED (100) and MLOPS_MONITOR_MIN_LABELLED (50)
BATCH_ROWS = 100
SETTLED_S = 3.0  # a version "is served" when every answer of the last 3 s names it
SHIFTED_FEATURE, SHIFT_STDS = "worst radius", 1.0
TARGET = "target"


def until(condition: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """``condition()``'s first truthy value, polled every ``every`` seconds; fails at the
    deadline naming ``what`` (the polls go to the stack: not every 50 ms)."""
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        stop.wait(every)


@dataclass
class LoadAnswer:
    sent_at: float
    status: int | None  # None: no HTTP answer at all (connection error, timeout)
    version: str | None
    error: str | None = None


@dataclass
class Load:
    """Fresh rows to /api/predict from ``LOAD_THREADS`` threads, each paced to its share of
    ``LOAD_RATE`` times ``PACE``, every answer recorded."""

    base_url: str
    rows: list[dict[str, float]]
    answers: list[LoadAnswer] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.started = time.monotonic()
        for number in range(LOAD_THREADS):
            thread = threading.Thread(target=self._send, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.stopped = time.monotonic()

    @property
    def rate(self) -> float:
        return len(self.answers) / max(self.stopped - self.started, 1e-9)

    def versions_since(self, moment: float) -> set[str | None]:
        with self._lock:
            return {a.version for a in self.answers if a.sent_at >= moment}

    def _send(self, number: int) -> None:
        interval = LOAD_THREADS / (LOAD_RATE * PACE)
        next_at = time.monotonic()
        row = number
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                features = self.rows[row % len(self.rows)]
                row += LOAD_THREADS
                answer = self._one(client, features)
                with self._lock:
                    self.answers.append(answer)
                next_at = max(next_at + interval, time.monotonic() - BACKLOG_S)
                self._stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not a sync

    @staticmethod
    def _one(client: httpx.Client, features: dict[str, float]) -> LoadAnswer:
        sent = time.monotonic()
        try:
            answer = client.post("/api/predict", json={"features": features})
        except httpx.HTTPError as exc:
            return LoadAnswer(sent, None, None, f"{type(exc).__name__}: {exc}")
        version = None
        with contextlib.suppress(ValueError):  # a body that is not JSON: no version named
            version = answer.json().get("model", {}).get("version")
        error = None if answer.is_success else answer.text[:300]
        return LoadAnswer(sent, answer.status_code, version, error)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """The table the stack trains on (MLOPS_DATASET_PATH's default: scikit-learn's)."""
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def load(base_url: str, table: pd.DataFrame) -> Iterator[Load]:
    rows = RowGenerator.fit(table, TARGET).sample(20_000, seed=1301).drop(columns=TARGET)
    loader = Load(base_url, rows.to_dict(orient="records"))
    loader.start()
    yield loader
    loader.stop()


def _send_labelled(http: httpx.Client, table: pd.DataFrame) -> list[str]:
    """Fresh rows under the moved concept: predicted in batches, then labelled. Returns the
    batches' request ids."""
    shift = ConceptShift.fit(table, TARGET, SHIFTED_FEATURE, SHIFT_STDS)
    print(f"concept shift: {shift.describe()}")
    rows = RowGenerator.fit(table, TARGET).sample(LABELLED_ROWS, seed=1302)
    labels = shift.relabel(rows, rows[TARGET])
    changed = int((labels != rows[TARGET]).sum())
    print(f"{changed} of {LABELLED_ROWS} labels changed by the shift")
    assert changed >= LABELLED_ROWS * 0.05, "the shift changed too few labels to matter"
    features = rows.drop(columns=TARGET)
    request_ids = []
    for start in range(0, LABELLED_ROWS, BATCH_ROWS):
        request_id = f"loop-{uuid.uuid4().hex[:12]}"
        chunk = features.iloc[start : start + BATCH_ROWS].to_dict(orient="records")
        answer = http.post(
            "/api/predict/batch", json={"rows": chunk}, headers={"X-Request-ID": request_id}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"], answer.text
        items = [
            {"request_id": request_id, "row": i, "label": int(label)}
            for i, label in enumerate(labels.iloc[start : start + BATCH_ROWS])
        ]
        stored = http.post("/api/feedback", json={"items": items})
        assert stored.status_code in (200, 202), stored.text
        assert stored.json() == {"accepted": len(items), "unknown": []}, stored.text
        request_ids.append(request_id)
    return request_ids


def _run_monitor(http: httpx.Client) -> str:
    """Start the monitor deployment through Prefect's REST API (what `prefect deployment run`
    does); its flow run id."""
    deployment = http.get("/prefect/api/deployments/name/monitor/monitor")
    assert deployment.status_code == 200, deployment.text
    created = http.post(
        f"/prefect/api/deployments/{deployment.json()['id']}/create_flow_run",
        json={"parameters": {}, "tags": ["e2e", "loop"]},
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _flow_run(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return http.get(f"/prefect/api/flow_runs/{run_id}").json()


def _retrain_runs(http: httpx.Client, since: datetime) -> list[dict[str, Any]]:
    """The retrain flow's runs created since ``since``, newest first."""
    found = http.post(
        "/prefect/api/flow_runs/filter",
        json={
            "flows": {"name": {"any_": ["retrain"]}},
            "flow_runs": {"start_time": {"after_": since.isoformat()}},
            "sort": "START_TIME_DESC",
            "limit": 10,
        },
    )
    assert found.status_code == 200, found.text
    return found.json()


def _mark(began: float, what: str) -> None:
    print(f"[{time.monotonic() - began:6.1f}s] {what}")


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_concept_shift_under_load_retrains_promotes_and_serves_without_a_failed_request(
    http, base_url, table, load, capsys
):
    began, began_at = time.monotonic(), datetime.now(UTC)
    mlflow.set_tracking_uri(f"{base_url}/mlflow")
    client = MlflowClient()
    before = client.get_model_version_by_alias(MODEL, "champion").version
    last_run = int(psql("SELECT coalesce(max(id), 0) FROM monitor_runs"))
    until(lambda: len(load.answers) >= LOAD_RATE, 30, "the load's first answers", every=0.2)

    request_ids = _send_labelled(http, table)
    _mark(began, f"{LABELLED_ROWS} labelled rows answered and labelled")
    quoted = ", ".join(f"'{r}'" for r in request_ids)
    until(
        lambda: (
            psql(f"SELECT count(*) FROM predictions WHERE request_id IN ({quoted})")
            == str(LABELLED_ROWS)
        ),
        120,
        "the labelled rows in PostgreSQL",
    )

    # 1. the monitor run (and the retrain it starts) completes; an alert opened
    _mark(began, "labelled rows in PostgreSQL; starting the monitor deployment")
    monitor_id = _run_monitor(http)
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    state = until(
        lambda: (s := _flow_run(http, monitor_id)["state_type"]) in final and s,
        600,
        f"monitor flow run {monitor_id} to finish (with the retrain it starts)",
        every=2.0,
    )
    assert state == "COMPLETED", f"monitor run {monitor_id} ended {state}"
    _mark(began, "monitor run (and its retrain) completed")
    opened = psql(
        "SELECT condition, extract(epoch FROM opened_at), reason FROM alerts "
        f"WHERE opened_by_run > {last_run} ORDER BY id"
    ).splitlines()
    assert opened, "the monitor run opened no alert"
    print("alerts opened:", *opened, sep="\n  ")
    assert any(line.startswith("degraded|") for line in opened), opened
    alert_at = min(float(line.split("|")[1]) for line in opened)

    # 2. a retrain flow run COMPLETED in Prefect, after the alert
    retrains = _retrain_runs(http, began_at)
    assert retrains, "no retrain flow run in Prefect since the test began"
    retrain = retrains[-1]  # the first one since the test began
    assert retrain["state_type"] == "COMPLETED", retrain["state_type"]
    assert _time(retrain["start_time"]) >= alert_at - 1, (retrain["start_time"], alert_at)

    # 3. the gate promoted a new champion (the MLflow alias, the version's decision)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version != before, f"the champion is still v{before}"
    tags = champion.tags
    print(f"v{champion.version}: {tags.get('gate.decision')}: {tags.get('gate.reason')}")
    assert tags["gate.decision"] == "promoted", tags
    assert tags["gate.compared_with"] == f"v{before}", tags
    assert float(tags["gate.candidate_score"]) > float(tags["gate.champion_score"]), tags
    promoted_at = champion.creation_timestamp / 1000
    assert promoted_at >= _time(retrain["start_time"]) - 1

    # 4. the predictor serves it: the load's answers name the new version
    new = str(champion.version)
    until(
        lambda: load.versions_since(time.monotonic() - SETTLED_S) == {new},
        60,
        f"the load's answers to name v{new} only",
        every=0.5,
    )
    _mark(began, f"the load's answers name v{new}")
    ready = http.get("/api/ready").json()
    assert ready["model"]["version"] == new, ready

    # 5. a rollback under the same load, as an operator runs it (`mlops rollback` in the stack)
    rolled_at = time.monotonic()
    done = subprocess.run(
        ["docker", "compose", "exec", "-T", "worker", "mlops", "rollback"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"v{new} -> v{before}" in done.stdout, done.stdout
    until(
        lambda: load.versions_since(time.monotonic() - SETTLED_S) == {before},
        60,
        f"the load's answers to name v{before} again",
        every=0.5,
    )
    _mark(began, f"rolled back: the load's answers name v{before}")
    load.stop()

    # 6. over the whole sequence: no non-2xx answer, every answer named its version, and each
    # swap is one assignment: a second after a version's first answer, only it answers
    answers = load.answers
    failed = [a for a in answers if a.status is None or not 200 <= a.status < 300]
    unnamed = [a for a in answers if not a.version]
    ordered = sorted(answers, key=lambda a: a.sent_at)
    promoted = next(a.sent_at for a in ordered if a.version == new)
    restored = next(a.sent_at for a in ordered if a.version == before and a.sent_at >= rolled_at)
    took = time.monotonic() - began
    with capsys.disabled():  # in CI's log even when the test passes
        print(
            f"\nloop: {len(answers)} answers in {load.stopped - load.started:.0f}s "
            f"({load.rate:.1f}/s): v{before}, promoted v{new} at {promoted - load.started:.0f}s, "
            f"rolled back to v{before} at {restored - load.started:.0f}s; {len(failed)} failed, "
            f"{len(unnamed)} without a version; the test took {took:.0f}s"
        )
    assert not failed, [(a.status, a.error) for a in failed[:5]]
    assert not unnamed, unnamed[:5]
    assert load.rate >= LOAD_RATE, f"{load.rate:.1f} requests/s, {LOAD_RATE} needed"
    assert {a.version for a in ordered if a.sent_at < promoted} == {before}
    served_new = {a.version for a in ordered if promoted + 1 <= a.sent_at < rolled_at}
    assert served_new == {new}, served_new
    assert {a.version for a in ordered if a.sent_at >= restored + 1} == {before}
