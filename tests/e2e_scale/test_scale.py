"""Three predictor replicas and two flow workers behind nginx, under load, proved by numbers.

What each test shows, on the stack compose-e2e.sh's table stage booted with `--scale api=3
--scale worker=2`, reached through nginx only (the Prefect API at /prefect/api, MLflow at
/mlflow); the containers' logs and PostgreSQL are read with `docker` to check what landed:
- the two workers trained one champion between them (one train run, tagged bootstrap);
- requests spread over the three replicas (each request id in exactly one replica's log);
- a promotion reaches every replica through Redis' notice: the stage sets the predictors'
  registry poll (MLOPS_RELOAD_POLL_SECONDS) far above this test's deadline, so only the
  notice can switch them in time; each replica logs the swap and then answers the new version;
- every prediction answered 200 is one row in PostgreSQL, none lost, none twice;
- the scheduled monitor ran once per interval however many workers poll (asserted last, over
  all the time the stack has been up).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import mlflow
import pytest
from benchmarks.scale import Answer, by_outcome, drive
from mlflow.tracking import MlflowClient

from mlops_stack.registry import TASK_TAG  # the task the predictor reads a version as
from tests.e2e.conftest import REPO, psql
from tests.e2e_scale.conftest import REPLICAS, WORKERS
from tests.support.servers import wait_for

CLIENTS = 6
"""Concurrent clients of the load: a few, as a handful of callers would be."""
SWAP_CLIENTS = 3
"""Clients predicting during the promotion: fewer, so that the CLI starting beside them on
CI's two cores is not starved (it imports MLflow: seconds of CPU)."""
REQUESTS = 300
SWAP_SECONDS = 60
"""How long every replica has to switch once `mlops promote` returned: far below the stage's
registry poll (MLOPS_RELOAD_POLL_SECONDS=3600), so only Redis' notice can do it in time."""
RAN = {"RUNNING", "COMPLETED", "FAILED", "CRASHED"}
"""Prefect state types of a flow run that started executing."""


def _run(*args: str, timeout: float = 120) -> str:
    """A command's output (stdout and stderr: `docker logs` gives a container's stderr there)."""
    done = subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout + done.stderr


def _containers(service: str) -> dict[str, str]:
    """The service's running containers: id -> name."""
    ids = _run("docker", "compose", "ps", "-q", service).split()
    names = _run("docker", "inspect", "-f", "{{.Name}}", *ids).split() if ids else []
    return {i: n.lstrip("/") for i, n in zip(ids, names, strict=True)}


def _log_events(container: str) -> list[dict[str, Any]]:
    """The container's JSON log lines (MLOPS_LOG_JSON), as dicts."""
    events = []
    for line in _run("docker", "logs", container).splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _answered_by(ids: set[str]) -> dict[str, Counter[str]] | None:
    """Which api container logged a 200 for each of ``ids`` (name -> ids), once every id is in
    some container's log; None before that."""
    per: dict[str, Counter[str]] = {}
    for container, name in _containers("api").items():
        per[name] = Counter(
            e["request_id"]
            for e in _log_events(container)
            if e.get("event") == "request" and e.get("status") == 200 and e.get("request_id") in ids
        )
    seen = set().union(*(set(c) for c in per.values())) if per else set()
    return per if seen == ids else None


def _ok_ids(answers: list[Answer]) -> set[str]:
    return {a.request_id for a in answers if a.status == 200}


def _spread(per: dict[str, Counter[str]]) -> dict[str, int]:
    return {name: sum(ids.values()) for name, ids in per.items()}


def _flow_runs(http: httpx.Client, deployment: str) -> list[dict[str, Any]]:
    """Every flow run of the deployment (the worker's deployments share their flows' names)."""
    answer = http.post(
        "/prefect/api/flow_runs/filter",
        json={
            "deployments": {"name": {"any_": [deployment]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        },
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json())


@pytest.fixture(scope="module")
def registry(base_url: str) -> MlflowClient:
    """MLflow's registry through nginx's /mlflow, as a notebook outside the stack reaches it."""
    uri = f"{base_url}/mlflow"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_the_two_workers_trained_one_bootstrap_champion(http, registry, model_name):
    assert len(_containers("worker")) == WORKERS
    runs = _flow_runs(http, "train")
    summary = [(r["name"], r["tags"], r["state_type"]) for r in runs]
    assert len(runs) == 1, f"train runs: {summary}"
    assert "bootstrap" in runs[0]["tags"] and runs[0]["state_type"] == "COMPLETED", summary
    versions = registry.search_model_versions(f"name = '{model_name}'")
    champion = registry.get_model_version_by_alias(model_name, "champion")
    assert [v.version for v in versions] == [champion.version], [v.version for v in versions]


@pytest.fixture(scope="module")
def spread(base_url: str, body: dict[str, Any], prefix: str) -> list[Answer]:
    """REQUESTS predictions through nginx from CLIENTS concurrent clients."""
    started = time.monotonic()
    answers = drive(base_url, body, clients=CLIENTS, prefix=f"{prefix}-spread", requests=REQUESTS)
    elapsed = time.monotonic() - started
    print(f"\n{len(answers)} requests in {elapsed:.1f} s: {by_outcome(answers)}")
    return answers


def test_requests_land_on_every_replica(spread):
    assert len(spread) == REQUESTS and by_outcome(spread) == {"200": REQUESTS}
    assert len(_containers("api")) == REPLICAS
    ids = _ok_ids(spread)
    per = wait_for(lambda: _answered_by(ids), timeout=60, what="every request id in a log")
    print(f"answered by: {_spread(per)}")
    # each id answered once: by exactly one replica (a retry would show as a 5xx elsewhere)
    assert sum(_spread(per).values()) == len(ids), _spread(per)
    # spread, not a stray request each: nginx starts each request at a random replica, so
    # each of three gets about a third; under a tenth would mean it is not in the rotation
    assert all(n >= len(ids) / 10 for n in _spread(per).values()), _spread(per)


@dataclass(frozen=True)
class Promotion:
    before: str  # the champion before
    after: str  # the version promoted
    swaps: dict[str, float]  # replica -> seconds from `mlops promote` starting to its swap
    during: list[Answer]  # the load while the replicas switched
    then: list[Answer]  # a load sent once every replica had switched


def _register_same_model(base_url: str, registry: MlflowClient, model_name: str) -> tuple[str, str]:
    """A new registry version of the champion's own model (its logged model, ``models:/m-...``,
    registered again with its task tag); the old champion's version and the new one's."""
    champion = registry.get_model_version_by_alias(model_name, "champion")
    tags = {TASK_TAG: champion.tags[TASK_TAG]} if TASK_TAG in champion.tags else None
    mlflow.set_tracking_uri(f"{base_url}/mlflow")  # register_model resolves the logged model
    mlflow.set_registry_uri(f"{base_url}/mlflow")
    new = mlflow.register_model(champion.source, model_name, tags=tags)
    assert new.run_id == champion.run_id, (new.run_id, champion.run_id)
    return str(champion.version), str(new.version)


def _swap_times(version: str) -> dict[str, datetime | None]:
    """When each api container logged its swap to ``version`` (name -> UTC time, or None)."""
    return {
        name: next(
            (
                datetime.fromisoformat(e["timestamp"])
                for e in _log_events(container)
                if e.get("event") == "model_swapped" and str(e.get("version")) == version
            ),
            None,
        )
        for container, name in _containers("api").items()
    }


@pytest.fixture(scope="module")
def promotion(base_url, body, prefix, registry, model_name) -> Promotion:
    """Register the champion's model again and promote it with `mlops promote` (in a worker
    container, as an operator would), while SWAP_CLIENTS clients keep predicting."""
    before, after = _register_same_model(base_url, registry, model_name)
    during: list[Answer] = []
    stop = threading.Event()
    load = threading.Thread(
        target=drive,
        args=(base_url, body),
        kwargs={"clients": SWAP_CLIENTS, "prefix": f"{prefix}-swap", "stop": stop, "into": during},
        daemon=True,
    )
    load.start()
    try:
        wait_for(lambda: len(during) >= 50, timeout=60, what="the load under way")
        started = datetime.now(UTC)
        print(_run("docker", "compose", "exec", "-T", "worker", "mlops", "promote", after))
        took = (datetime.now(UTC) - started).total_seconds()
        swapped = wait_for(
            lambda: (times := _swap_times(after)) and all(times.values()) and times,
            timeout=SWAP_SECONDS,
            what=f"every api replica to log model_swapped v{after}",
        )
    finally:
        stop.set()
        load.join(timeout=60)
    then = drive(base_url, body, clients=CLIENTS, prefix=f"{prefix}-after", requests=150)
    swaps = {name: (at - started).total_seconds() for name, at in swapped.items()}
    print(
        f"\nv{before} -> v{after}: `mlops promote` took {took:.1f} s; each replica swapped at "
        f"+{', +'.join(f'{s:.1f}' for s in swaps.values())} s; during: {by_outcome(during)}, "
        f"versions {dict(Counter(a.version for a in during))}"
    )
    return Promotion(before, after, swaps, list(during), then)


def test_a_promotion_switches_every_replica(promotion):
    during = promotion.during
    assert by_outcome(during) == {"200": len(during)}  # no answer lost to the swap
    assert {a.version for a in during} <= {promotion.before, promotion.after}
    then = promotion.then
    assert by_outcome(then) == {"200": len(then)}
    assert {a.version for a in then} == {promotion.after}, Counter(a.version for a in then)
    # each replica answered some of them: every one of the three serves the new version
    per = wait_for(lambda: _answered_by(_ok_ids(then)), timeout=60, what="the ids in the logs")
    print(f"answered v{promotion.after} after the swap: {_spread(per)}")
    assert len(per) == REPLICAS and all(_spread(per).values()), _spread(per)


def test_every_prediction_answered_is_one_row(spread, promotion, prefix):
    answers = spread + promotion.during + promotion.then
    ok = _ok_ids(answers)
    assert ok and len(ok) == len(answers), by_outcome(answers)

    def stored() -> dict[str, int]:
        rows = psql(
            f"SELECT request_id, count(*) FROM predictions WHERE request_id LIKE '{prefix}-%' "
            "GROUP BY request_id"
        )
        return {i: int(n) for i, n in (line.split("|") for line in rows.splitlines() if line)}

    counts = wait_for(
        lambda: (c := stored()).keys() >= ok and c,
        timeout=120,
        what=f"the {len(ok)} rows in PostgreSQL (the workers' log writers)",
    )
    assert set(counts) == ok, sorted(set(counts) - ok)[:10]
    twice = {i: n for i, n in counts.items() if n != 1}
    assert not twice, twice
    print(f"\n{len(ok)} predictions answered 200, {len(counts)} rows, none twice")


def _interval_seconds(http: httpx.Client) -> float:
    answer = http.get("/prefect/api/deployments/name/monitor/monitor")
    assert answer.status_code == 200, answer.text
    schedules = [s["schedule"] for s in answer.json()["schedules"] if s.get("active", True)]
    assert len(schedules) == 1, schedules
    return float(schedules[0]["interval"])


def _when(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["expected_start_time"])


def test_one_scheduled_monitor_run_per_interval(http):
    """Last: over the whole time the stack has been up, two workers polling the same schedule.
    A slot run twice shows as two runs with one expected start time; a worker's start that
    moved the schedule, as two runs less than an interval apart."""
    interval = _interval_seconds(http)

    def ran() -> list[dict[str, Any]]:
        return [r for r in _flow_runs(http, "monitor") if r["state_type"] in RAN]

    wait_for(
        lambda: sum(r["state_type"] == "COMPLETED" for r in ran()) >= 2,
        timeout=4 * interval + 60,
        what="two completed monitor runs",
    )
    completed = sum(r["state_type"] == "COMPLETED" for r in ran())
    rows = int(psql("SELECT count(*) FROM monitor_runs"))
    runs = ran()  # after the count: every row's run had started by now
    summary = [(r["expected_start_time"], r["state_type"]) for r in runs]
    print(f"\nmonitor every {interval:.0f} s: {len(runs)} runs ran, {rows} rows: {summary}")
    twice = {t: n for t, n in Counter(r["expected_start_time"] for r in runs).items() if n > 1}
    assert not twice, f"slots run more than once: {twice}; {summary}"
    times = sorted(_when(r) for r in runs)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= interval - 1 for g in gaps), f"runs closer than {interval} s: {gaps}"
    # each monitor run writes one row: those completed before the count, at most those started
    assert completed <= rows <= len(runs), (completed, rows, summary)
