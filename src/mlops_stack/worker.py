"""``mlops worker``: the stack's background process.

One process per stack, next to the Prefect server:

- serves the flows as Prefect deployments: ``train/train`` and ``retrain/retrain`` on demand
  (the dashboard, the Prefect UI or its API start them), ``monitor/monitor`` on a schedule
  (``MLOPS_MONITOR_INTERVAL_MINUTES``) and ``retention/retention`` every hour (deletes rows
  older than ``MLOPS_RETENTION_DAYS``); each run executes in its own subprocess;
- drains the predictor's Redis stream into the monitoring database (``mlops log-writer``'s
  loop, in a thread), so predictions land in PostgreSQL with one service fewer;
- bootstraps: when the registry has no champion it starts the train deployment once, so a
  fresh ``docker compose up`` answers ``/api/predict`` without a manual step;
- on start, marks runs of its deployments that were pending or running when the previous
  worker died (a restart, an out-of-memory kill) as crashed: their process is gone, and left
  "running" they would block the bootstrap and mislead the Prefect UI for ever.

It is a Prefect *served* process rather than a work pool worker on purpose: one image, no
infrastructure blocks to register, and the flows run with the same settings and package.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from mlops_stack.backoff import Backoff
from mlops_stack.logs import get_logger
from mlops_stack.names import DEPLOYMENTS, TRAIN_DEPLOYMENT
from mlops_stack.stack import Stack

log = get_logger(__name__)
ACTIVE_STATES = ("SCHEDULED", "PENDING", "RUNNING")
ORPHAN_STATES = ("PENDING", "RUNNING")  # started by a runner: only a live worker can finish them
RETRY_SECONDS = (1, 2, 5, 10, 15)  # back-off while MLflow or Prefect are still starting


def deployments(stack: Stack) -> list[Any]:
    """The stack's flows as Prefect deployments; the monitor and retention run on a schedule.

    Each deployment's parameters are the flow's options filled from this worker's settings:
    Prefect's UI shows them as the run form, and a run started without parameters uses them.
    """
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.parameters import (
        MonitorParameters,
        RetentionParameters,
        RetrainParameters,
        TrainParameters,
    )
    from mlops_stack.flows.retention import INTERVAL, retention_flow
    from mlops_stack.flows.retrain import retrain_flow
    from mlops_stack.flows.train import train_flow

    settings = stack.settings
    return [
        train_flow.to_deployment(
            name="train",
            description="Train candidates, register the best, let the gate decide its alias.",
            parameters=TrainParameters.from_settings(settings).as_run_parameters(),
            tags=["mlops-stack"],
        ),
        monitor_flow.to_deployment(
            name="monitor",
            description="Drift, data quality and model quality over the latest window.",
            interval=timedelta(minutes=settings.monitor_interval_minutes),
            parameters=MonitorParameters.from_settings(settings).as_run_parameters(),
            tags=["mlops-stack"],
        ),
        retrain_flow.to_deployment(
            name="retrain",
            description="Retrain on the original plus labelled rows; gate on fresh rows.",
            parameters=RetrainParameters.from_settings(settings).as_run_parameters(),
            tags=["mlops-stack"],
        ),
        retention_flow.to_deployment(
            name="retention",
            description="Delete monitoring rows older than MLOPS_RETENTION_DAYS, in batches.",
            interval=INTERVAL,
            parameters=RetentionParameters.from_settings(settings).as_run_parameters(),
            tags=["mlops-stack"],
        ),
    ]


def retrying(
    what: str,
    call: Callable[[], Any],
    stop: threading.Event,
    give_up_after: float | None = None,
) -> Any:
    """``call()`` until it succeeds, backing off between tries; None once ``stop`` is set or
    ``give_up_after`` seconds have passed.

    The worker starts before MLflow or Prefect may answer; it waits for them rather than
    failing, and says what it is waiting for.
    """
    backoff = Backoff.fixed(RETRY_SECONDS, give_up_after=give_up_after)
    while not stop.is_set():
        try:
            return call()
        except Exception as exc:  # any failure to reach a service: wait and try again
            if backoff.expired():
                log.warning("worker_gave_up", waiting_for=what, error=str(exc)[:200])
                return None
            log.info(
                "worker_waiting", waiting_for=what, error=str(exc)[:200], retry_in=backoff.upcoming
            )
            backoff.wait(stop)
    return None


def _runs_in_states(
    client: Any, deployments: Any, states: tuple[str, ...], limit: int
) -> list[Any]:
    """Flow runs of the deployments a filter matches, in the given state types, newest first."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs: list[Any] = client.read_flow_runs(
        deployment_filter=deployments,
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(s) for s in states])
            )
        ),
        sort=FlowRunSort.ID_DESC,  # newest first
        limit=limit,
    )
    return runs


def _train_runs_in_flight() -> int:
    """Train runs already scheduled, pending or running (a restarted worker must not add one)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        only_train = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        return len(_runs_in_states(client, only_train, ACTIVE_STATES, limit=10))


def crash_orphaned_runs() -> list[str]:
    """Mark this stack's pending or running deployment runs as crashed; their ids.

    Called before ``serve()`` starts, so no run of this process can be among them: the stack
    has one worker, and a run it had started died with it. Scheduled runs are left to the new
    runner, which starts them as usual.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.states import Crashed

    names = [d.split("/")[1] for d in DEPLOYMENTS]
    only_ours = DeploymentFilter(name=DeploymentFilterName(any_=names))
    crashed = []
    with get_client(sync_client=True) as client:
        for run in _runs_in_states(client, only_ours, ORPHAN_STATES, limit=200):
            client.set_flow_run_state(
                run.id,
                Crashed(message="the worker that ran it stopped; marked at the next start"),
                force=True,
            )
            crashed.append(str(run.id))
    if crashed:
        log.warning("orphaned_runs_crashed", flow_runs=crashed)
    return crashed


def bootstrap(stack: Stack, stop: threading.Event) -> str:
    """Start the train deployment once if the registry has no champion; say what was done."""
    from prefect.deployments import run_deployment

    from mlops_stack.flows.parameters import TrainParameters

    params = TrainParameters.from_settings(stack.settings, trigger="bootstrap")
    if retrying("mlflow", lambda: stack.registry.champion() is not None, stop):
        log.info("bootstrap_skipped", reason="a champion exists")
        return "champion exists"
    in_flight = retrying("prefect deployment train/train", _train_runs_in_flight, stop)
    if in_flight is None:
        return "stopped"
    if in_flight:
        log.info("bootstrap_skipped", reason="a train run is already scheduled or running")
        return "train run in flight"
    run = retrying(
        "prefect",
        lambda: run_deployment(
            TRAIN_DEPLOYMENT,
            parameters=params.as_run_parameters(),
            timeout=0,
            tags=["bootstrap"],
        ),
        stop,
    )
    if run is None:
        return "stopped"
    log.info("bootstrap_started", flow_run=str(run.id), reason="the registry has no champion")
    return "train started"


def _log_writer(stack: Stack, stop: threading.Event) -> None:
    """Drain the Redis stream into the monitoring database (it backs off while either is down).

    The schema first: on a fresh stack the tables exist as soon as the worker is up, before
    the first prediction arrives, for every reader (the dashboard, `psql`, a notebook).
    """
    from mlops_stack.prediction_log.stream import StreamWriter

    retrying("monitoring database", stack.monitoring.ensure_schema, stop)
    if not stop.is_set():
        StreamWriter(stack.settings, stack.monitoring).run_forever(stop)


def run_worker(stack: Stack) -> None:
    """Serve the deployments until SIGTERM/SIGINT; the log writer and bootstrap run alongside."""
    from prefect import serve

    stop = threading.Event()
    # before serve(): none of this process's runs exists yet (bounded: Prefect is up by now)
    retrying("prefect (orphaned runs)", crash_orphaned_runs, stop, give_up_after=60)
    settings = stack.settings
    threads = []
    if settings.redis_url:
        threads.append(threading.Thread(target=_log_writer, args=(stack, stop), name="writer"))
    if settings.bootstrap_champion:
        threads.append(threading.Thread(target=bootstrap, args=(stack, stop), name="bootstrap"))
    for thread in threads:
        thread.start()

    def _terminate(*_: object) -> None:
        stop.set()
        raise KeyboardInterrupt  # serve() shuts its runner down cleanly on this

    signal.signal(signal.SIGTERM, _terminate)
    log.info(
        "worker_started",
        deployments=list(DEPLOYMENTS),
        monitor_every_minutes=settings.monitor_interval_minutes,
        retention_days=settings.retention_days,
        log_writer=bool(settings.redis_url),
    )
    try:
        serve(*deployments(stack), pause_on_shutdown=False, print_starting_message=False)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        stack.close()
        log.info("worker_stopped")
