"""Faults under load: 20 predictions a second with a key while a part of the prod stack fails.

For each fault: every request's id and answer, then the rows PostgreSQL holds for the ids that
were answered 200 (a 200 promises the row: none may be lost), and how long the clients and the
containers took to recover. Predictor restarts, upgrades and a single replica's crash must not
fail a single request; the other faults may (the figures are printed, not asserted).

Run by compose-e2e.sh's prod stage after tests/e2e_prod, one fault after the other, each from an
all-healthy stack and cleaned up in `finally` (a stopped service started, an image rolled back).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.e2e_prod.chaos.load import (
    Answer,
    Load,
    answered_ok,
    by_outcome,
    failed,
    ok_after,
    recovery_seconds,
)
from tests.e2e_prod.chaos.stack import (
    REPO,
    config,
    containers,
    crash,
    docker,
    heal,
    image_of,
    inspect,
    kill_uvicorn_worker,
    raise_open_files,
    stored_ids,
    wait_healthy,
)
from tests.e2e_prod.conftest import compose

EXAMPLE = json.loads((REPO / "examples" / "predict.json").read_text())
RATE = 20.0  # requests a second, the load
DOWN_SECONDS = 15.0  # how long Redis and PostgreSQL stay down
RECOVER_TIMEOUT = 240.0  # a fault's containers healthy again within this
TAIL_OK = 40  # after all is healthy, this many more 200s (2 s of load) before the load stops
ROWS_TIMEOUT = 60.0  # the rows of the 200 answers reach PostgreSQL within this
ROLLING_UPDATE = REPO / "infrastructure" / "prod" / "rolling-update.sh"
UPGRADE_LABEL = "org.mlops-stack.chaos-upgrade"


def _run(command: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def _replace_api(image: str, fallback: list[str]) -> None:
    """The api's containers replaced by ones of ``image``: with the rolling update where the
    repository has it (one replica at a time), else with ``fallback`` (all at once)."""
    if ROLLING_UPDATE.exists():
        _run([str(ROLLING_UPDATE), "api"], env={"MLOPS_IMAGE": image})
    else:
        _run(fallback, env={"MLOPS_IMAGE": image})


# --- the faults: each undoes itself (in finally) before it returns ---------------------------


def no_fault() -> None:
    """The control: the same measurement without a fault must find nothing lost or failed."""
    time.sleep(3)  # 3 s of undisturbed load: the duration of the control, not a wait for state


def kill9_uvicorn_worker() -> None:
    """A worker process of a replica that runs several (MLOPS_API_WORKERS > 1). The prod
    default is one process per replica: then there is none, and kill9-api-main is this fault."""
    pid = kill_uvicorn_worker(containers("api")[0])
    print(
        f"  killed uvicorn worker pid {pid}"
        if pid
        else "  no worker process: one uvicorn process per replica (MLOPS_API_WORKERS=1), "
        "whose kill -9 is kill9-api-main"
    )


def kill9_api_main() -> None:
    crash(containers("api")[0])


def restart_api() -> None:
    _replace_api(image_of("api"), ["docker", "compose", "restart", "api"])


def upgrade_api() -> None:
    """A new image (the current one plus a label) rolled out, checked, then rolled back."""
    current = image_of("api")
    token = secrets.token_hex(3)
    upgraded = f"{current.rsplit(':', 1)[0]}:chaos-upgrade-{token}"
    dockerfile = f"FROM {current}\nLABEL {UPGRADE_LABEL}={token}\n"
    docker("build", "-q", "-t", upgraded, "-", input=dockerfile)
    # no --wait: compose gives up on "unhealthy", which a slow start on a busy machine passes
    # through; wait_healthy's deadline is the judge
    up = ["docker", "compose", "up", "-d", "--no-deps", "api"]
    try:
        _replace_api(upgraded, up)
        wait_healthy(RECOVER_TIMEOUT)
        labels = [inspect(c)["Config"]["Labels"].get(UPGRADE_LABEL) for c in containers("api")]
        assert labels and set(labels) == {token}, f"api not upgraded to {upgraded}: {labels}"
    finally:
        try:
            _replace_api(current, up)
        finally:
            docker("image", "rm", upgraded, check=False)


def _down(service: str) -> None:
    compose("stop", service)
    try:
        time.sleep(DOWN_SECONDS)  # the outage's length, not a wait for state
    finally:
        compose("start", service)


def redis_down() -> None:
    _down("redis")


def postgres_down() -> None:
    _down("postgres")


def mlflow_killed() -> None:
    crash(containers("mlflow")[0])


def worker_killed() -> None:
    crash(containers("worker")[0])


@dataclass(frozen=True)
class Fault:
    name: str
    act: Callable[[], None]
    no_failed_requests: bool  # the target: predictor restarts, upgrades, one crash


FAULTS = [
    Fault("baseline", no_fault, True),
    Fault("kill9-uvicorn-worker", kill9_uvicorn_worker, True),
    Fault("kill9-api-main", kill9_api_main, True),
    Fault("restart-api", restart_api, True),
    Fault("upgrade-api", upgrade_api, True),
    Fault("redis-down", redis_down, False),
    Fault("postgres-down", postgres_down, False),
    Fault("mlflow-killed", mlflow_killed, False),
    Fault("worker-killed", worker_killed, False),
]


@dataclass(frozen=True)
class Figures:
    """What one fault did, as printed and as docs/deploy-vm.md quotes it."""

    fault: str
    outcomes: dict[str, int]
    answered_ok: int
    rows: int
    lost: list[str]
    rows_of_failed: int
    client_recovery_s: float | None
    healthy_after_s: float | None  # None: not all healthy within RECOVER_TIMEOUT
    fault_s: float
    problem: str  # the fault's action failed or the stack did not recover, else ""

    def line(self) -> str:
        recovered = "never" if self.client_recovery_s is None else f"{self.client_recovery_s}s"
        healthy = f"{self.healthy_after_s:.1f}s" if self.healthy_after_s is not None else "never"
        return (
            f"{self.fault:22} answers {self.outcomes}; rows {self.rows}/{self.answered_ok} of "
            f"the 200s ({len(self.lost)} lost), {self.rows_of_failed} rows of failed ids; "
            f"client recovered after {recovered}, all healthy {healthy} after the fault began "
            f"(fault {self.fault_s:.1f}s)" + (f"; {self.problem}" if self.problem else "")
        )


@pytest.fixture(scope="module")
def summary() -> Iterator[list[Figures]]:
    figures: list[Figures] = []
    yield figures
    print("\n=== chaos under 20 requests/s: the figures ===")
    for entry in figures:
        print(entry.line())


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """The load keeps up to a timeout's worth of requests in flight, a connection each."""
    old = raise_open_files(int(RATE * 30) + 1024)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.fixture(scope="module", autouse=True)
def the_limit_allows_the_load() -> None:
    """At 20/s one key sends 1,200 requests a minute: the predictor's per-key limit must allow
    it, or the figures would count 429s instead of faults (compose-e2e.sh raises it)."""
    limit = config()["services"]["api"]["environment"].get("MLOPS_RATE_LIMIT_PER_MINUTE")
    assert limit is not None and int(limit) >= 2 * RATE * 60, (
        f"MLOPS_RATE_LIMIT_PER_MINUTE={limit} is below twice the load's {RATE * 60:.0f}/min: "
        "set it for the prod stage as infrastructure/ci/compose-e2e.sh does"
    )


def _rows_for(prefix: str, wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` with a row in PostgreSQL, polled until all are there or
    ROWS_TIMEOUT passed (the stream writer and the spool's replay take their time)."""
    deadline = time.monotonic() + ROWS_TIMEOUT
    while True:
        stored = stored_ids(prefix)
        if wanted <= stored or time.monotonic() > deadline:
            return stored
        time.sleep(1)  # between polls of the database


def _measure(
    fault: Fault, prefix: str, https_url: str, api_key: str
) -> tuple[Figures, list[Answer]]:
    with Load(https_url, api_key, prefix, EXAMPLE, rate=RATE) as load:
        deadline = time.monotonic() + 60
        while ok_after(load.answers(), 0) < 10:  # the load gets answers before the fault
            assert time.monotonic() < deadline, (
                f"no 200s before the fault: {by_outcome(load.answers())}"
            )
            time.sleep(0.1)
        began = time.monotonic()
        problem = ""
        try:
            fault.act()
        except Exception as exc:  # the figures are still measured and printed, then it fails
            problem = f"the fault's action failed: {exc}"
        acted = time.monotonic()
        healthy = None
        try:
            wait_healthy(RECOVER_TIMEOUT)
            healthy = time.monotonic()
        except AssertionError as exc:
            problem = problem or str(exc)
        deadline = (healthy or acted) + 60
        while healthy and ok_after(load.answers(), healthy) < TAIL_OK:
            if time.monotonic() > deadline:
                break  # the predictor never answers again: the figures below say so
            time.sleep(0.1)
    answers = load.stop()
    ok = answered_ok(answers)
    stored = _rows_for(prefix, ok)
    failed_ids = {a.request_id for a in failed(answers)}
    figures = Figures(
        fault=fault.name,
        outcomes=by_outcome(answers),
        answered_ok=len(ok),
        rows=len(ok & stored),
        lost=sorted(ok - stored, key=lambda rid: int(rid.rsplit("-", 1)[1])),
        rows_of_failed=len(failed_ids & stored),
        client_recovery_s=recovery_seconds(answers, began),
        healthy_after_s=None if healthy is None else healthy - began,
        fault_s=acted - began,
        problem=problem,
    )
    return figures, answers


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_no_answered_prediction_is_lost(
    fault: Fault, https_url: str, api_key: str, summary: list[Figures]
):
    heal()
    started = time.monotonic()
    prefix = f"chaos-{fault.name}-{secrets.token_hex(3)}"
    figures, answers = _measure(fault, prefix, https_url, api_key)
    summary.append(figures)
    print(f"\n{figures.line()} [{time.monotonic() - started:.0f}s]")
    if figures.lost:
        print(f"  lost ids: {figures.lost}")
    failures = failed(answers)
    if failures:
        first, last = min(a.sent for a in failures), max(a.sent for a in failures)
        print(f"  {len(failures)} failed requests over {last - first:.1f}s")

    assert not figures.problem, figures.problem
    assert not figures.lost, f"{len(figures.lost)} answered predictions lost: {figures.lost}"
    assert figures.client_recovery_s is not None, "the predictor never answered 200 again"
    if fault.no_failed_requests:
        assert not failures, f"{len(failures)} failed requests: {figures.outcomes}"
