"""``mlops worker``: the stack's background process; several may run at once.

Each worker process, next to the Prefect server:

- serves the flows as Prefect deployments: ``train/train`` and ``retrain/retrain`` on demand
  (the dashboard, the Prefect UI or its API start them), ``monitor/monitor`` on a schedule
  (``MLOPS_MONITOR_INTERVAL_MINUTES``) and ``retention/retention`` every hour (deletes rows
  older than ``MLOPS_RETENTION_DAYS``); each run executes in its own subprocess, at most
  ``MLOPS_WORKER_RUN_LIMIT`` at once;
- drains the predictor's Redis stream into the monitoring database (``mlops log-writer``'s
  loop, in a thread), so predictions land in PostgreSQL with one service fewer;
- bootstraps: when the registry has no champion it starts the train deployment once, so a
  fresh ``docker compose up`` answers ``/api/predict`` without a manual step.

Several workers (``docker compose up --scale worker=2``) share the work, each run once:

- a run goes to whichever worker polls first with a free slot: the Prefect server lets one
  runner only move a run to Pending (a second one is refused and drops it);
- runs beat every :data:`HEARTBEAT_SECONDS`; the automation ``mlops-stack: crash runs that
  stopped beating``, created once by the first worker, has the Prefect server mark a run
  Crashed when its beats stop (its worker died: a restart, an out-of-memory kill). At its
  start a worker also crashes the runs silent for :data:`SILENCE_MEANS_DEAD` (pending ones
  whose worker died before they began); a live worker's runs are never silent that long;
- the bootstrap checks "no train run in flight" and starts one under a PostgreSQL advisory
  lock, so workers starting together start one train run; a run in flight that then
  crashes (its worker died) is bootstrapped once more;
- schedules have a fixed anchor and a slug, so the re-apply of every worker's start changes
  neither their id nor their times, and Prefect does not schedule a time twice;
- the log writers share one Redis consumer group; retention passes take an advisory lock.

It is a Prefect *served* process rather than a work pool worker on purpose: one image, no
infrastructure blocks to register, and the flows run with the same settings and package.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_stack.backoff import Backoff
from mlops_stack.logs import get_logger
from mlops_stack.names import DEPLOYMENTS, TRAIN_DEPLOYMENT
from mlops_stack.stack import Stack

log = get_logger(__name__)
ACTIVE_STATES = ("SCHEDULED", "PENDING", "RUNNING")
ORPHAN_STATES = ("PENDING", "RUNNING")  # started by a runner: only a live worker can finish them
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
RETRY_SECONDS = (1, 2, 5, 10, 15)  # back-off while MLflow or Prefect are still starting
TAG = "mlops-stack"  # every run of the worker's deployments carries it (the automation's scope)

HEARTBEAT_SECONDS = 30
"""How often a run the worker executes says it is alive (``prefect.flow-run.heartbeat``);
Prefect's least. The heartbeat is a thread of the run's own process: it stops when that dies."""
SILENCE_MEANS_DEAD = timedelta(seconds=4 * HEARTBEAT_SECONDS)
"""A run of ours silent this long (no heartbeat, no state change) has no process any more:
four missed beats, so that a busy machine delaying one or two is not mistaken for a death."""
ZOMBIE_AUTOMATION = "mlops-stack: crash runs that stopped beating"

SCHEDULE_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
"""Where the interval schedules count from. Fixed, so that every worker applies the same
schedule: each start re-applies the deployments, and a schedule anchored at "now" would move
the runs' times with every worker that starts."""


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
            tags=[TAG],
        ),
        monitor_flow.to_deployment(
            name="monitor",
            description="Drift, data quality and model quality over the latest window.",
            schedules=[every(timedelta(minutes=settings.monitor_interval_minutes))],
            parameters=MonitorParameters.from_settings(settings).as_run_parameters(),
            tags=[TAG],
        ),
        retrain_flow.to_deployment(
            name="retrain",
            description="Retrain on the original plus labelled rows; gate on fresh rows.",
            parameters=RetrainParameters.from_settings(settings).as_run_parameters(),
            tags=[TAG],
        ),
        retention_flow.to_deployment(
            name="retention",
            description="Delete monitoring rows older than MLOPS_RETENTION_DAYS, in batches.",
            schedules=[every(INTERVAL)],
            parameters=RetentionParameters.from_settings(settings).as_run_parameters(),
            tags=[TAG],
        ),
    ]


def every(interval: timedelta) -> Any:
    """An interval schedule that several workers can apply without a run due twice.

    Each worker's ``serve()`` re-applies the deployments when it starts. Prefect then deletes
    the deployment's future scheduled runs and its scheduler creates them again, skipping a
    time for which a run with the same idempotency key (deployment, schedule id, time) exists.
    A run a worker has already taken (pending, a few seconds before its time) is not deleted,
    so its time would be scheduled a second time if the schedule's id or times changed. They
    do not: the slug makes Prefect update the schedule in place (same id) rather than replace
    it, and the fixed :data:`SCHEDULE_ANCHOR` keeps its times. The slug stays the same when
    the interval changes: a new slug would add a second schedule next to the old one.
    """
    from prefect.schedules import Interval

    return Interval(interval, anchor_date=SCHEDULE_ANCHOR, timezone="UTC", slug="interval")


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
    client: Any, deployments: Any, states: tuple[str, ...], limit: int, sort: str = "ID_DESC"
) -> list[Any]:
    """Flow runs of the deployments a filter matches, in the given state types, in the order
    of Prefect's ``FlowRunSort`` named ``sort``."""
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
        sort=FlowRunSort[sort],
        limit=limit,
    )
    return runs


def _train_runs_in_flight() -> int:
    """Train runs already scheduled, pending or running (a restarted worker must not add one)."""
    return len(_train_runs(ACTIVE_STATES, limit=10))


def _train_runs(states: tuple[str, ...], limit: int, sort: str = "ID_DESC") -> list[Any]:
    """Runs of the train deployment in these states (``sort``: a ``FlowRunSort`` name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(TRAIN_DEPLOYMENT)
        only_train = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        return _runs_in_states(client, only_train, states, limit=limit, sort=sort)


def zombie_automation(
    name: str = ZOMBIE_AUTOMATION, tag: str = TAG, silence: timedelta = SILENCE_MEANS_DEAD
) -> Any:
    """The automation that marks a run Crashed when its heartbeats stop (a "zombie").

    Prefect's documented recipe (docs.prefect.io, "detect zombie flows"): after a heartbeat,
    expect another one or an end state within ``silence``; none came, the run's process is
    gone (its container was killed, out of memory, the host rebooted), so its state is set to
    Crashed. Only runs tagged ``tag`` (every run of the worker's deployments) are watched.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=name,
        description=(
            f"Runs tagged {tag!r} beat every {HEARTBEAT_SECONDS} s while their process lives; "
            f"silent for {silence.total_seconds():g} s, they are marked Crashed. Created by "
            "`mlops worker`."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silence,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {silence.total_seconds():g} s: the worker process that "
                    "ran it stopped"
                ),
            )
        ],
    )


def ensure_zombie_automation(automation: Any = None) -> str:
    """Create the zombie automation unless one of its name exists; its id.

    Idempotent by name, so every worker start calls it; two workers starting together call
    it under the start-up lock (:func:`start_up`), so that they do not both create it.
    """
    from prefect.client.orchestration import get_client

    automation = automation or zombie_automation()
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if existing:
            return str(existing[0].id)
        created = str(client.create_automation(automation))
    log.info("zombie_automation_created", automation=automation.name, id=created)
    return created


def _beating_since(client: Any, run_id: Any, since: datetime) -> bool:
    """Whether the run emitted a heartbeat since ``since`` (the Prefect server keeps events)."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    page = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=since),
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        ),
        limit=1,
    )
    return bool(page.events)


def crash_orphaned_runs(silence: timedelta = SILENCE_MEANS_DEAD) -> list[str]:
    """Mark this stack's pending or running runs that no live worker can own as crashed; ids.

    Another worker may be executing runs right now, so a run is crashed only when it has
    been silent for ``silence``: no state change and no heartbeat since (a live run beats
    every :data:`HEARTBEAT_SECONDS`; a pending one turns running within seconds). This
    catches what the zombie automation cannot: a run whose process died while it was
    pending, or before its first beat, or before the automation existed. Scheduled runs are
    left to the runners, which start them as usual.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.states import Crashed

    names = [d.split("/")[1] for d in DEPLOYMENTS]
    only_ours = DeploymentFilter(name=DeploymentFilterName(any_=names))
    crashed = []
    with get_client(sync_client=True) as client:
        since = datetime.now(UTC) - silence
        for run in _runs_in_states(client, only_ours, ORPHAN_STATES, limit=200):
            if run.state.timestamp >= since or _beating_since(client, run.id, since):
                continue  # alive, or may be: another worker's
            client.set_flow_run_state(
                run.id,
                Crashed(
                    message=(
                        f"silent for over {silence.total_seconds():g} s: the worker that ran it "
                        "stopped; marked by a worker at its start"
                    )
                ),
                force=True,
            )
            crashed.append(str(run.id))
    if crashed:
        log.warning("orphaned_runs_crashed", flow_runs=crashed)
    return crashed


def bootstrap(stack: Stack, stop: threading.Event) -> str:
    """Start the train deployment once if the registry has no champion; say what was done.

    Several workers may start together on an empty registry: the check "no train run in
    flight" and the start of one are made under the monitoring database's bootstrap lock,
    so the second worker waits, then finds the first one's run in flight.
    """
    if retrying("mlflow", lambda: stack.registry.champion() is not None, stop):
        log.info("bootstrap_skipped", reason="a champion exists")
        return "champion exists"
    outcome = retrying(
        "monitoring database (bootstrap lock)", lambda: _bootstrap_locked(stack, stop), stop
    )
    return "stopped" if outcome is None else str(outcome)


def _bootstrap_locked(stack: Stack, stop: threading.Event) -> str:
    """The bootstrap's check and start, one worker at a time."""
    from prefect.deployments import run_deployment

    from mlops_stack.flows.parameters import TrainParameters

    params = TrainParameters.from_settings(stack.settings, trigger="bootstrap")
    with stack.upkeep.bootstrap_lock(stop) as held:
        if not held:
            return "stopped"
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


def bootstrap_and_watch(stack: Stack, stop: threading.Event) -> str:
    """:func:`bootstrap`; if it found a train run in flight, :func:`bootstrap_if_it_crashes`.

    A starting worker no longer crashes runs that may still be alive, so a dead worker's
    train run counts as in flight until the zombie automation marks it Crashed: without the
    wait, a stack restarted during its first training would stay without a champion.
    """
    outcome = bootstrap(stack, stop)
    if outcome != "train run in flight":
        return outcome
    return bootstrap_if_it_crashes(stack, stop) or outcome


def bootstrap_if_it_crashes(
    stack: Stack, stop: threading.Event, poll_seconds: float = 30
) -> str | None:
    """Wait until no train run is in flight; if the latest one crashed (its worker died),
    :func:`bootstrap` once more and say what it did, else None.

    Once only: a run that crashes for its own reasons (out of memory) is not retried for
    ever. A run that completed or failed is the gate's or the data's verdict: not retried.
    """
    while retrying("prefect (train runs)", _train_runs_in_flight, stop):
        if stop.wait(poll_seconds):
            return "stopped"
    ended = retrying(
        "prefect (train runs)",
        lambda: _train_runs(FINAL_STATES, limit=1, sort="END_TIME_DESC"),  # the last to end
        stop,
    )
    if stop.is_set():
        return "stopped"
    if not ended or ended[0].state_type.value != "CRASHED":
        return None
    log.warning("bootstrap_again", crashed_run=str(ended[0].id), reason="its worker died")
    return bootstrap(stack, stop)


def start_up(stack: Stack, stop: threading.Event) -> None:
    """What a worker does once at its start, beside serving: the zombie automation (under the
    bootstrap lock, so two workers starting together create one), the runs no live worker
    owns, then the bootstrap."""

    def automation_once() -> str:
        with stack.upkeep.bootstrap_lock(stop) as held:
            return ensure_zombie_automation() if held else "stopped"

    retrying("prefect (zombie automation)", automation_once, stop, give_up_after=120)
    retrying("prefect (orphaned runs)", crash_orphaned_runs, stop, give_up_after=120)
    if stack.settings.bootstrap_champion:
        bootstrap_and_watch(stack, stop)


def _log_writer(stack: Stack, stop: threading.Event) -> None:
    """Drain the Redis stream into the monitoring database (it backs off while either is down).

    The schema first: on a fresh stack the tables exist as soon as the worker is up, before
    the first prediction arrives, for every reader (the dashboard, `psql`, a notebook).
    """
    from mlops_stack.prediction_log.stream import StreamWriter

    retrying("monitoring database", stack.monitoring_db.ensure_schema, stop)
    if not stop.is_set():
        StreamWriter(stack.settings, stack.predictions).run_forever(stop)


def run_worker(stack: Stack) -> None:
    """Serve the deployments until SIGTERM/SIGINT; the log writer and bootstrap run alongside."""
    from prefect import serve

    stop = threading.Event()
    settings = stack.settings
    threads = [threading.Thread(target=start_up, args=(stack, stop), name="start-up")]
    if settings.redis_url:
        threads.append(threading.Thread(target=_log_writer, args=(stack, stop), name="writer"))
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
        run_limit=settings.worker_run_limit,
    )
    try:
        # limit: a run due while every slot here is taken is left for another worker; the
        # Prefect server lets one runner only move a run to pending, so each runs once.
        # pause_on_shutdown=False: a worker that stops must not pause the others' schedules.
        serve(
            *deployments(stack),
            limit=settings.worker_run_limit,
            heartbeat_seconds=HEARTBEAT_SECONDS,
            pause_on_shutdown=False,
            print_starting_message=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        stack.close()
        log.info("worker_stopped")
