"""The worker's parts that do not need the Docker stack: deployments, bootstrap, probe.

The deployments are applied to the session's real Prefect API; nothing executes their runs
here (the compose end-to-end tests do), so a created run stays SCHEDULED: exactly the
"already in flight" state the bootstrap must not add to.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort

from mlops_stack import worker
from mlops_stack.flows.train import train_flow
from mlops_stack.names import MONITOR_DEPLOYMENT, TRAIN_DEPLOYMENT
from mlops_stack.probe import probe
from mlops_stack.stack import current_stack
from tests.support.servers import serving, wait_for


def _bootstrap_runs() -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.ID_DESC, limit=200)
    return [run for run in runs if "bootstrap" in (run.tags or [])]


def _no_train_run_in_flight() -> None:
    """Delete the train runs earlier tests left scheduled or running (one Prefect server for
    the session): the bootstrap tests start from none."""
    with get_client(sync_client=True) as client:
        for run in worker._train_runs(worker.ACTIVE_STATES, limit=200):
            client.delete_flow_run(run.id)


def test_deployments_schedule_only_the_monitor_and_retention(stack):
    stack(
        monitor_interval_minutes="7",
        monitor_window_rows="123",
        candidates="random_forest",
        retention_days="30",
    )
    by_name = {d.name: d for d in worker.deployments(current_stack())}
    # each deployment's parameters are its flow's options, filled from the worker's settings
    assert by_name["monitor"].parameters["params"]["window_rows"] == 123
    # the monitor's run form: what an operator changes per run, not every setting
    assert list(by_name["monitor"].parameters["params"]) == [
        "window_rows",
        "window_minutes",
        "drift_alpha",
        "drift_min_effect",
        "drift_warning_share",
        "drift_share",
        "quality_drop",
        "quality_error_rise",
        "min_labelled",
        "retrain_enabled",
    ]
    assert by_name["train"].parameters["params"]["candidates"] == ["random_forest"]
    assert by_name["retrain"].parameters["params"]["train"]["candidates"] == ["random_forest"]
    assert by_name["retention"].parameters["params"] == {"days": 30, "batch_rows": 5000}
    assert set(by_name) == {"train", "monitor", "retrain", "retention"}
    [schedule] = by_name["monitor"].schedules
    assert schedule.schedule.interval.total_seconds() == 7 * 60
    [hourly] = by_name["retention"].schedules
    assert hourly.schedule.interval.total_seconds() == 3600
    assert not by_name["train"].schedules and not by_name["retrain"].schedules


def test_bootstrap_starts_one_train_run_and_never_a_second(stack):
    stack(candidates="logistic_regression")
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    _no_train_run_in_flight()
    stop = threading.Event()
    before = len(_bootstrap_runs())
    assert worker.bootstrap(current_stack(), stop) == "train started"
    assert len(_bootstrap_runs()) == before + 1
    # a restarted worker finds that run scheduled and leaves it be
    assert worker.bootstrap(current_stack(), stop) == "train run in flight"
    assert len(_bootstrap_runs()) == before + 1


def test_bootstrap_leaves_an_existing_champion_alone(stack):
    stack(candidates="logistic_regression")
    train_flow()
    assert current_stack().registry.champion() is not None
    assert worker.bootstrap(current_stack(), threading.Event()) == "champion exists"


def test_retrying_stops_when_asked():
    stop = threading.Event()
    calls = []

    def failing():
        calls.append(1)
        stop.set()  # the worker is shutting down while a service is still away
        raise ConnectionError("not yet")

    assert worker.retrying("a service", failing, stop) is None
    assert len(calls) == 1


def test_retrying_gives_up_when_the_next_wait_would_pass_its_deadline():
    calls = []

    def failing():
        calls.append(1)
        raise ConnectionError("not yet")

    # the first back-off (1 s) already passes a 0.5 s deadline: one try, then None
    assert worker.retrying("a service", failing, threading.Event(), give_up_after=0.5) is None
    assert len(calls) == 1


def test_probe_says_ok_only_for_2xx():
    app = FastAPI()
    app.get("/ok")(lambda: {"ok": True})
    with serving(app) as base:
        assert probe(f"{base}/ok") == (True, f"200 {base}/ok")
        ok, detail = probe(f"{base}/missing")
        assert not ok and detail.startswith("404")
    ok, detail = probe(f"{base}/ok", timeout=1)  # the server is gone
    assert not ok and "refused" in detail.lower()


def _heartbeat(run_id, tags=("mlops-stack",)) -> None:
    """What a live run's process emits every few seconds (Prefect's flow engine does it)."""
    from prefect.events import emit_event
    from prefect.events.related import tags_as_related_resources

    emit_event(
        event="prefect.flow-run.heartbeat",
        resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"},
        related=tags_as_related_resources(set(tags)),
    )


def _stored_heartbeats(client, run_id) -> int:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    page = client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        ),
        limit=50,  # the client's default (100) is more than the server accepts
    )
    return len(page.events)


def test_a_starting_worker_crashes_only_the_runs_no_live_worker_owns(stack):
    """Silent for longer than a live run ever is: crashed. Beating, or in its state since
    recently (another worker's run, just taken): left alone, as are scheduled runs.

    The server stamps states itself, so "silent for long" is a real wait: ``silence`` is
    15 s here (the worker's is :data:`worker.SILENCE_MEANS_DEAD`)."""
    from prefect.states import Pending, Running

    silence = timedelta(seconds=15)
    stack(candidates="logistic_regression")
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        monitor = client.read_deployment_by_name(MONITOR_DEPLOYMENT)

        def run_in(*states):
            run = client.create_flow_run_from_deployment(train.id)
            for state in states:
                client.set_flow_run_state(run.id, state, force=True)
            return run.id

        dead_running = run_in(Pending(), Running())
        dead_pending = run_in(Pending())
        beating = run_in(Pending(), Running())
        scheduled = client.create_flow_run_from_deployment(monitor.id).id
        last = client.read_flow_run(beating).state.timestamp
        wait_for(lambda: datetime.now(UTC) - last > silence, 30, "the runs to be silent for long")
        _heartbeat(beating)  # a live run's process beats on
        wait_for(lambda: _stored_heartbeats(client, beating), 10, "the heartbeat stored")
        just_taken = run_in(Pending())
        just_started = run_in(Pending(), Running())
        in_flight = worker._train_runs_in_flight()

        crashed = worker.crash_orphaned_runs(silence)

        assert set(crashed) == {str(dead_running), str(dead_pending)}
        runs = (dead_running, dead_pending, beating, just_taken, just_started, scheduled)
        state = {run: client.read_flow_run(run).state.type.value for run in runs}
    assert state == {
        dead_running: "CRASHED",
        dead_pending: "CRASHED",
        beating: "RUNNING",
        just_taken: "PENDING",
        just_started: "RUNNING",
        scheduled: "SCHEDULED",
    }
    # the crashed ones are no longer "in flight", so they do not hold back the bootstrap
    assert worker._train_runs_in_flight() == in_flight - 2


def _watch(stack_, said: list) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: said.append(
            worker.bootstrap_if_it_crashes(stack_, threading.Event(), poll_seconds=0.2)
        )
    )
    thread.start()
    return thread


def test_a_train_run_in_flight_that_crashes_is_bootstrapped_again_one_that_ends_is_not(stack):
    """The whole stack restarted during its first training: the new worker found the dead
    worker's run "in flight"; when the zombie automation marks it Crashed, it trains again."""
    from prefect.states import Completed, Crashed, Running

    stack(candidates="logistic_regression")
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    _no_train_run_in_flight()
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        for end, expected in ((Completed(), [None]), (Crashed(), ["train started"])):
            left = client.create_flow_run_from_deployment(train.id).id
            client.set_flow_run_state(left, Running(), force=True)
            before = len(_bootstrap_runs())
            said: list = []
            watcher = _watch(current_stack(), said)
            client.set_flow_run_state(left, end, force=True)
            watcher.join(timeout=60)
            assert said == expected
            assert len(_bootstrap_runs()) == before + (expected != [None])
            _no_train_run_in_flight()
