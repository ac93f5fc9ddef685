"""Two workers at once (`docker compose up --scale worker=2`), on real servers.

- the bootstrap: two workers starting together on an empty registry start ONE train run
  (the session's Prefect test server, PostgreSQL's advisory lock);
- the zombie automation: a run whose heartbeats stop is marked Crashed by the Prefect server,
  a run that ended is not (the session's Prefect test server runs triggers and actions);
- the schedule: two runners of one scheduled deployment, the second starting (and so
  re-applying the deployment) while the first has runs in hand, execute each time slot once
  (a Prefect server of the test's own: the session's runs no scheduler);
- the log writer: two writers in one consumer group write every entry once between them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Running

from mlops_stack import worker
from mlops_stack.names import TRAIN_DEPLOYMENT
from mlops_stack.prediction_log.stream import StreamWriter
from mlops_stack.stack import Stack, current_stack
from tests.integration.monitoring_db.test_monitoring_db import records
from tests.integration.test_worker import _heartbeat, _no_train_run_in_flight, _stored_heartbeats
from tests.support.monitoring import Monitoring
from tests.support.paths import REPO
from tests.support.servers import free_port, server_process, wait_for

ROOT = REPO


def _train_runs() -> list:
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[train.id])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )


def test_two_workers_bootstrapping_together_start_one_train_run(stack, postgres_url):
    settings = stack(candidates="logistic_regression", monitoring_db_url=postgres_url)
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    _no_train_run_in_flight()
    before = {run.id for run in _train_runs()}
    workers = [Stack(settings), Stack(settings)]  # two processes' own connections
    both_ready = threading.Barrier(2)
    said: list[str] = []

    def start(own: Stack) -> None:
        both_ready.wait()
        said.append(worker.bootstrap(own, threading.Event()))

    threads = [threading.Thread(target=start, args=(own,)) for own in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for own in workers:
        own.close()

    assert sorted(said) == ["train run in flight", "train started"]
    new = [run for run in _train_runs() if run.id not in before]
    assert len(new) == 1 and "bootstrap" in new[0].tags


def test_the_zombie_automation_crashes_a_run_whose_heartbeats_stop(stack):
    """A short silence and a tag of this test's own, so that no other test's run is watched."""
    tag = f"zombie-test-{uuid.uuid4().hex[:8]}"
    automation = worker.zombie_automation(
        name=f"test: {tag}", tag=tag, silence=timedelta(seconds=10)
    )
    created = worker.ensure_zombie_automation(automation)
    try:
        assert worker.ensure_zombie_automation(automation) == created  # once, by name
        with get_client(sync_client=True) as client:
            assert len(client.read_automations_by_name(automation.name)) == 1
            train = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
            silent, finished = (
                client.create_flow_run_from_deployment(train.id, tags=[tag]).id for _ in (1, 2)
            )
            for run in (silent, finished):
                client.set_flow_run_state(run, Running(), force=True)
                _heartbeat(run, tags=(tag,))
            wait_for(
                lambda: all(_stored_heartbeats(client, run) for run in (silent, finished)),
                30,
                "the heartbeats stored",
            )
            client.set_flow_run_state(finished, Completed(), force=True)  # it ended in time

            def state_of(run):
                return client.read_flow_run(run).state

            crashed = wait_for(
                lambda: state_of(silent).is_crashed() and state_of(silent), 90, "a crash"
            )
            assert "no heartbeat for 10 s" in crashed.message
            # its heartbeat came first: its silence was judged in the same pass or before
            assert state_of(finished).is_completed()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_automation(uuid.UUID(created))


# --- two runners of one schedule -------------------------------------------------------------


@pytest.fixture
def scheduling_prefect(tmp_path: Path):
    """A Prefect server of this test's own, with its scheduler (``prefect server start``,
    SQLite); the session's test server is Prefect's ephemeral one, which runs none."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/prefect.db",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "prefect-server.log"
    with server_process(command, log, healthy, "prefect server start", env=env):
        yield url


def _runner(api_url: str, interval_seconds: float, record: Path, home: Path):
    """``tests/support/runner_probe.py`` in its own process: one worker's serve() of the
    schedule."""
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",  # the worker polls every 10 s: a quicker test
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.runner_probe", str(interval_seconds), str(record)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _executed(record: Path) -> list[tuple[str, int]]:
    """(scheduled time, runner pid) of every run executed so far."""
    if not record.exists():
        return []
    lines = record.read_text(encoding="utf-8").splitlines()
    return [(slot, int(pid)) for slot, pid in (line.split() for line in lines)]


def test_two_runners_execute_each_scheduled_slot_once(scheduling_prefect, tmp_path):
    """The second runner starts while the first holds the next slots (a runner takes a run
    up to 10 s before its time, so with a 5 s interval it always holds one or two): its
    serve() re-applies the deployment, and no slot may run twice for it."""
    interval = 5.0
    record = tmp_path / "executed.txt"
    first = _runner(scheduling_prefect, interval, record, tmp_path / "home-1")
    second = None
    try:
        wait_for(lambda: _executed(record), 90, "the first runner's first run")
        second = _runner(scheduling_prefect, interval, record, tmp_path / "home-2")
        started = len(_executed(record))
        runners = {first.pid, second.pid}
        wait_for(
            lambda: (
                {pid for _, pid in _executed(record)[started:]} == runners
                and len(_executed(record)) >= started + 6
            ),
            120,
            "runs executed by both runners",
        )
    finally:
        for process in (first, second):
            if process is not None:
                process.terminate()
        for process in (first, second):
            if process is not None:
                process.wait(timeout=60)
    executed = _executed(record)
    assert {pid for _, pid in executed} == {first.pid, second.pid}
    times = sorted(datetime.fromisoformat(slot) for slot, _ in executed)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    # once per interval: never two runs closer than it (the same slot twice, or a slot moved
    # by the second runner's schedule), and every run on the schedule's grid
    assert min(gaps) >= interval, f"runs {interval} s apart expected: {executed}"
    assert all(((t - worker.SCHEDULE_ANCHOR).total_seconds() % interval) == 0 for t in times)
    # and the runs beat, tagged as the zombie automation watches them
    beating = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        related=EventRelatedFilter(id=[f"prefect.tag.{worker.TAG}"]),
    )
    with (
        temporary_settings(updates={PREFECT_API_URL: scheduling_prefect}),
        get_client(sync_client=True) as client,
    ):  # the server stores events in batches: the last ones a few seconds later
        wait_for(
            lambda: client.read_events(filter=beating, limit=50).total >= len(executed),
            30,
            "a heartbeat of every run",
        )


# --- the log writer --------------------------------------------------------------------------


def test_two_log_writers_write_every_entry_once_between_them(
    stack, postgres_url, stream_name, services
):
    """Two workers' writers in one consumer group: Redis hands each entry to one of them."""
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        monitoring_db_url=postgres_url,
        prediction_log_batch_rows="50",
    )
    client = redis.Redis.from_url(services.redis_url)
    for item in records(2000):
        client.xadd(stream_name, {"record": item.to_json()})
    store = Monitoring(postgres_url)
    store.migrate()
    handled: Counter[str] = Counter()
    stop = threading.Event()

    def write(name: str) -> None:
        writer = StreamWriter(settings, consumer=name)
        while not stop.is_set():
            handled[name] += writer.run_once(block_ms=100)
        writer.close()

    threads = [threading.Thread(target=write, args=(f"worker-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: store.predictions.count_predictions() >= 2000, 60, "2000 rows written")
        wait_for(lambda: client.xlen(stream_name) == 0, 10, "every entry acknowledged")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert sum(handled.values()) == 2000  # no entry handed to both
    assert handled["worker-1"] > 0 and handled["worker-2"] > 0
    assert store.predictions.count_predictions() == 2000
    assert client.xpending(stream_name, settings.stream_group)["pending"] == 0
    store.dispose()
    client.close()
