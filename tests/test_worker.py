"""The worker's parts that do not need the Docker stack: deployments, bootstrap, probe.

The deployments are applied to the session's real Prefect API; nothing executes their runs
here (the compose end-to-end tests do), so a created run stays SCHEDULED: exactly the
"already in flight" state the bootstrap must not add to.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort

from mlops_stack import worker
from mlops_stack.flows.train import train_flow
from mlops_stack.names import MONITOR_DEPLOYMENT, TRAIN_DEPLOYMENT
from mlops_stack.probe import probe
from mlops_stack.stack import current_stack

from .servers import serving


def _bootstrap_runs() -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.ID_DESC, limit=200)
    return [run for run in runs if "bootstrap" in (run.tags or [])]


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


def test_a_restarted_worker_crashes_the_runs_its_predecessor_left_running(stack):
    from prefect.states import Pending, Running

    stack(candidates="logistic_regression")
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        monitor = client.read_deployment_by_name(MONITOR_DEPLOYMENT)
        running = client.create_flow_run_from_deployment(train.id)
        client.set_flow_run_state(running.id, Pending(), force=True)
        client.set_flow_run_state(running.id, Running(), force=True)
        scheduled = client.create_flow_run_from_deployment(monitor.id)
        in_flight = worker._train_runs_in_flight()

        assert str(running.id) in worker.crash_orphaned_runs()

        assert client.read_flow_run(running.id).state.type.value == "CRASHED"
        assert client.read_flow_run(scheduled.id).state.type.value == "SCHEDULED"
    # no longer "in flight", so it does not hold back the new worker's bootstrap
    assert worker._train_runs_in_flight() == in_flight - 1
