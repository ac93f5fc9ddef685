"""`mlops demo`: the whole loop, embedded, in one command, with what happens at each step.

It drives the real parts only (the train flow, the predictor over HTTP, the traffic simulator,
the monitor and retrain flows, the gate) in a fresh data directory. The scenario is a concept
shift: the second batch of users arrives with shifted inputs whose true labels follow a changed
relationship, which the champion mis-scores. Nothing in the loop knows it is a demo: the status,
the alert, the retrain and the gate's decision printed are the ones the loop reached.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from mlops_stack.flows.monitor import MonitorSummary
from mlops_stack.names import RetrainStatus
from mlops_stack.settings import Settings
from mlops_stack.stack import Stack, install

# Ten size and texture features of the built-in table, moved three standard deviations.
SHIFTED = (
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
)
# The demo's own embedded stack: a fresh directory, whatever the environment points at.
DEMO_SETTINGS = {
    "dataset_path": None,  # the built-in table
    "redis_url": None,
    "monitoring_db_url": None,
    "tracking_uri": None,
    "artifact_location": None,
    "reload_poll_seconds": 1.0,
    "log_flush_seconds": 0.2,
}
# Options of the demo's monitor runs that differ from the defaults (passed as flow parameters).
DEMO_MONITOR = {"min_rows": 100, "retrain_enabled": True}
DEMO_RETRAIN = {"min_labelled": 50}


@dataclass
class Phase:
    name: str
    rows: int = 0
    status: str = ""
    drift_share: float | None = None
    accuracy: float | None = None
    serving: str = ""
    note: str = ""


@dataclass
class DemoResult:
    directory: Path
    phases: list[Phase] = field(default_factory=list)
    versions: tuple[str | None, str | None] = (None, None)
    reports: list[str] = field(default_factory=list)


def _settings(directory: Path, base: Settings) -> Settings:
    """The user's settings with the demo's embedded stack under ``directory``."""
    return base.model_copy(update={"data_dir": directory, **DEMO_SETTINGS})


@contextmanager
def _predictor(stack: Stack) -> Iterator[str]:
    """The predictor under uvicorn on a free loopback port, for the demo's duration."""
    import uvicorn

    from mlops_stack.serving.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(stack), host="127.0.0.1", port=0, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the predictor did not start")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _serving_version(base: str) -> str:
    return str(httpx.get(f"{base}/model", timeout=10).json()["version"])


def run_demo(directory: Path, console: Console, base: Settings) -> DemoResult:
    """Run the loop once; print each step; return what happened."""
    directory.mkdir(parents=True, exist_ok=False)
    stack = Stack(_settings(directory, base))
    previous = install(stack)  # the flows of this process use the demo's stack
    # The narration is the output: the parts' own log lines (alerts are warnings) would bury it.
    quiet = [logging.getLogger(name) for name in ("mlops_stack", "prefect")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with stack:
            return _run(directory, stack, console)
    finally:
        install(previous)
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def _run(directory: Path, stack: Stack, console: Console) -> DemoResult:
    from mlops_stack.data import load_dataset
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.parameters import (
        MonitorParameters,
        RetrainParameters,
        TrainParameters,
    )
    from mlops_stack.flows.train import train_flow
    from mlops_stack.simulate import Drift, Simulator, apply_drift
    from mlops_stack.training import split_data

    settings = stack.settings
    result = DemoResult(directory)
    step = _stepper(console)

    step("1. train a champion on the built-in table (569 rows, 30 features)")
    trained = train_flow(TrainParameters.from_settings(settings))
    console.print(
        f"   v{trained.version} ({trained.candidate}): {trained.reason}; "
        f"holdout accuracy {trained.metrics['accuracy']:.3f}",
        highlight=False,
    )
    dataset = load_dataset(None, "target")
    held = split_data(
        dataset.features, dataset.labels, test_size=settings.test_size, seed=settings.random_seed
    )
    monitor = MonitorParameters.from_settings(
        settings,
        window_rows=len(held.X_test),
        retrain=RetrainParameters.from_settings(settings, **DEMO_RETRAIN),
        **DEMO_MONITOR,
    )

    with _predictor(stack) as base:
        step(f"2. predictor serving v{_serving_version(base)} at {base}")
        step(f"3. clean traffic: {len(held.X_test)} held-out rows with their true labels")
        Simulator(base, held.X_test, held.y_test, rate=0).run(len(held.X_test))
        clean = monitor_flow(monitor)
        result.phases.append(_phase("clean traffic", clean, _serving_version(base)))
        console.print(f"   monitor: {clean.status} - {clean.reason}", highlight=False)

        step(
            f"4. shifted traffic: {len(SHIFTED)} features +3 std, labels follow a changed "
            "relationship (flipped)"
        )
        shifted = apply_drift(
            held.X_test, [Drift(f, "shift", 3.0) for f in SHIFTED], held.X_train, seed=0
        )
        Simulator(base, shifted, 1 - held.y_test, rate=0).run(len(shifted))
        drifted = monitor_flow(monitor)
        console.print(f"   monitor: {drifted.status} - {drifted.reason}", highlight=False)
        for alert in drifted.alerts:
            console.print(f"   alert: {alert}", highlight=False)
        retrain = drifted.retrain
        if retrain is not None:
            console.print(f"   retrain: {retrain.status} - {retrain.reason}", highlight=False)
        before = _serving_version(base)
        after = before
        if retrain is not None and retrain.status == RetrainStatus.PROMOTED:
            step(f"5. the predictor picks up v{retrain.version} by itself")
            deadline = time.monotonic() + 60
            while after != retrain.version and time.monotonic() < deadline:
                time.sleep(0.5)
                after = _serving_version(base)
        result.phases.append(_phase("shifted traffic", drifted, after))
        result.versions = (trained.version, after)
        result.reports = [p for p in (clean.report_uri, drifted.report_uri) if p]
    _summary(console, result, settings)
    return result


def _phase(name: str, summary: MonitorSummary, serving: str) -> Phase:
    return Phase(
        name,
        summary.window_rows,
        summary.status,
        summary.drift_share,
        summary.quality.get("accuracy"),
        serving,
        summary.retrain.status if summary.retrain else "",
    )


def _stepper(console: Console) -> Callable[[str], None]:
    started = time.monotonic()

    def step(text: str) -> None:
        console.print(f"[bold][{time.monotonic() - started:5.1f}s][/] {text}", highlight=False)

    return step


def _summary(console: Console, result: DemoResult, settings: Settings) -> None:
    table = Table(title="what the loop did")
    for column in (
        "phase",
        "rows",
        "status",
        "drift share",
        "accuracy (labels)",
        "retrain",
        "serving after",
    ):
        table.add_column(column)
    for p in result.phases:
        table.add_row(
            p.name,
            str(p.rows),
            p.status,
            "" if p.drift_share is None else f"{p.drift_share:.0%}",
            "" if p.accuracy is None else f"{p.accuracy:.3f}",
            p.note,
            f"v{p.serving}",
        )
    console.print(table)
    first, last = result.versions
    console.print(f"champion: v{first} -> v{last}", highlight=False)
    console.print(
        f"state: {result.directory} (stamped {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        highlight=False,
    )
    console.print(
        f"MLflow UI: mlflow ui --backend-store-uri {settings.resolved_tracking_uri}",
        highlight=False,
    )
    for report in result.reports:
        console.print(f"drift report: {report}", highlight=False)
