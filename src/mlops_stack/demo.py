"""`mlops demo`: the whole loop, embedded, in one command, with what happens at each step.

It drives the real parts only (the train flow, the predictor over HTTP, the traffic simulator,
the monitor and retrain flows, the gate) in a fresh data directory, on the built-in
classification table, the built-in regression table (``--task regression``) or the user's own
(``--data``). The scenario is a concept shift: the second batch of users arrives with shifted
inputs whose true labels follow a changed relationship (the next class; for a number, two
standard deviations more), which the champion mis-scores. Nothing in the loop knows it is a
demo: the status, the alert, the retrain and the gate's decision printed are the ones the loop
reached.
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
from typing import TYPE_CHECKING

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from mlops_stack.data import BUILTIN_DATASET, BUILTIN_REGRESSION_DATASET
from mlops_stack.flows.monitor import MonitorSummary
from mlops_stack.names import RetrainStatus, Task, holdout_metrics, quality_metrics
from mlops_stack.settings import Settings
from mlops_stack.stack import Stack, install

if TYPE_CHECKING:
    from mlops_stack.data import Dataset
    from mlops_stack.simulate import Drift
    from mlops_stack.training import Split

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
SHIFT_STDS = 3.0
"""How far the second batch's numeric inputs move, in standard deviations of training's."""
LABEL_SHIFT_STDS = 2.0
"""A regression table's changed relationship: the true value is this many standard deviations
of the target higher than the champion learned."""


@dataclass(frozen=True)
class DemoTable:
    """Which table the demo runs on: ``path`` None is the built-in classification table."""

    path: Path | str | None = None
    target: str = "target"
    task: str = "auto"

    @classmethod
    def choose(
        cls, data: Path | None, target: str | None, task: str | None, base: Settings
    ) -> DemoTable:
        """``--data``/``--target``/``--task`` as given: the user's table, the built-in
        regression table for ``--task regression`` alone, else the built-in one."""
        if data is not None:
            return cls(data, target or base.target_column, task or "auto")
        if task == Task.REGRESSION:
            return cls(BUILTIN_REGRESSION_DATASET, "target", Task.REGRESSION)
        return cls(BUILTIN_DATASET, "target", task or "auto")


@dataclass
class Phase:
    name: str
    rows: int = 0
    status: str = ""
    drift_share: float | None = None
    quality: float | None = None  # the task's first quality metric on the labelled rows
    serving: str = ""
    note: str = ""


@dataclass
class DemoResult:
    directory: Path
    task: Task = Task.CLASSIFICATION
    phases: list[Phase] = field(default_factory=list)
    versions: tuple[str | None, str | None] = (None, None)
    reports: list[str] = field(default_factory=list)


def _settings(directory: Path, base: Settings, table: DemoTable) -> Settings:
    """The user's settings with the demo's embedded stack under ``directory``."""
    data = {"dataset_path": table.path, "target_column": table.target, "task": table.task}
    return base.model_copy(update={"data_dir": directory, **DEMO_SETTINGS, **data})


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


def run_demo(
    directory: Path, console: Console, base: Settings, table: DemoTable | None = None
) -> DemoResult:
    """Run the loop once on ``table`` (the built-in one by default); print each step; return
    what happened.

    Raises :class:`~mlops_stack.data.DataValidationError` before anything starts when the
    table cannot be read or has no such target column.
    """
    table = table or DemoTable()
    dataset = _load(table)
    directory.mkdir(parents=True, exist_ok=False)
    stack = Stack(_settings(directory, base, table))
    previous = install(stack)  # the flows of this process use the demo's stack
    # The narration is the output: the parts' own log lines (alerts are warnings) would bury it.
    quiet = [logging.getLogger(name) for name in ("mlops_stack", "prefect")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with stack:
            return _run(directory, stack, console, dataset)
    finally:
        install(previous)
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def _load(table: DemoTable) -> Dataset:
    from mlops_stack.data import DataValidationError, Problem, load_dataset

    dataset = load_dataset(table.path, table.target)
    if table.target not in dataset.frame.columns:
        have = ", ".join(map(str, dataset.frame.columns[:20]))
        raise DataValidationError([Problem(table.target, f"no such column; the table has: {have}")])
    return dataset


def _run(directory: Path, stack: Stack, console: Console, dataset: Dataset) -> DemoResult:
    from mlops_stack.data import infer_task
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.parameters import (
        MonitorParameters,
        RetrainParameters,
        TrainParameters,
    )
    from mlops_stack.flows.train import train_flow
    from mlops_stack.simulate import Simulator, apply_drift, plan_traffic, split_like_training

    settings = stack.settings
    task = infer_task(dataset.labels, settings.task)  # as the train flow infers it
    result = DemoResult(directory, task=task)
    step = _stepper(console)

    step(f"1. train a champion on {_describe(dataset, task)}")
    trained = train_flow(TrainParameters.from_settings(settings))
    metric = holdout_metrics(task)[0]
    console.print(
        f"   v{trained.version} ({trained.candidate}): {trained.reason}; "
        f"holdout {metric} {trained.metrics[metric]:.3f}",
        highlight=False,
    )
    held = split_like_training(dataset, settings)
    # a small table's holdout is topped up with unlabelled training rows (see simulate)
    clean = plan_traffic(held, max(len(held.X_test), DEMO_MONITOR["min_rows"]), seed=0)
    rows = len(clean.features)
    monitor = MonitorParameters.from_settings(
        settings,
        window_rows=rows,
        retrain=RetrainParameters.from_settings(settings, **DEMO_RETRAIN),
        **DEMO_MONITOR,
    )

    with _predictor(stack) as base:
        step(f"2. predictor serving v{_serving_version(base)} at {base}")
        labelled = f"{clean.held_out} held-out rows with their true labels"
        extra = f", {clean.extra} unlabelled rows of the table" if clean.extra else ""
        step(f"3. clean traffic: {labelled}{extra}")
        Simulator(base, clean.features, clean.labels, rate=0).run(rows)
        first = monitor_flow(monitor)
        result.phases.append(_phase("clean traffic", first, _serving_version(base), task))
        console.print(f"   monitor: {first.status} - {first.reason}", highlight=False)

        drifts = _shifts(dataset, held)
        step(f"4. shifted traffic: {_describe_shift(drifts)}; labels {_relationship(task)}")
        shifted = apply_drift(clean.features, drifts, held.X_train, seed=0)
        Simulator(base, shifted, _changed(clean.labels, held, task), rate=0).run(rows)
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
        result.phases.append(_phase("shifted traffic", drifted, after, task))
        result.versions = (trained.version, after)
        result.reports = [p for p in (first.report_uri, drifted.report_uri) if p]
    _summary(console, result, settings)
    return result


def _describe(dataset: Dataset, task: Task) -> str:
    source = {
        BUILTIN_DATASET: "the built-in breast cancer table",
        BUILTIN_REGRESSION_DATASET: "the built-in diabetes table",
    }.get(dataset.source, dataset.source)
    rows, features = len(dataset.frame), dataset.frame.shape[1] - 1
    return f"{source} ({rows} rows, {features} columns besides '{dataset.target}', {task})"


def _shifts(dataset: Dataset, held: Split) -> list[Drift]:
    """The second batch's inputs: the built-in table's ten size and texture features, or
    every numeric feature of another table, moved ``SHIFT_STDS``; a table without numeric
    features gets each categorical one switched to its rarest category in 80 % of rows."""
    from mlops_stack.simulate import Drift, is_numeric

    if dataset.source == BUILTIN_DATASET:
        return [Drift(f, "shift", SHIFT_STDS) for f in SHIFTED]
    columns = held.X_train.columns
    numeric = [str(c) for c in columns if is_numeric(held.X_train[c])]
    if numeric:
        return [Drift(f, "shift", SHIFT_STDS) for f in numeric]
    rarest = {str(c): held.X_train[c].astype(str).value_counts().index[-1] for c in columns}
    return [Drift(f, "mix", 0.8, category) for f, category in rarest.items()]


def _describe_shift(drifts: list[Drift]) -> str:
    if drifts and drifts[0].kind == "mix":
        return f"{len(drifts)} categorical features switched to their rarest category"
    return f"{len(drifts)} features +{SHIFT_STDS:g} std"


def _relationship(task: Task) -> str:
    if task is Task.REGRESSION:
        return f"follow a changed relationship (+{LABEL_SHIFT_STDS:g} std of the target)"
    return "follow a changed relationship (each class becomes the next one)"


def _changed(labels: pd.Series, held: Split, task: Task) -> pd.Series:
    """The second batch's true labels: a class becomes the next class (for two classes, the
    other one); a number moves up ``LABEL_SHIFT_STDS`` standard deviations of the target.
    Rows without a label keep none."""
    known = labels.notna()
    changed = labels.copy()
    if task is Task.REGRESSION:
        offset = LABEL_SHIFT_STDS * float(held.y_train.std())
        changed[known] = labels[known].astype(float) + offset
        return changed
    classes = sorted(held.y_train.unique().tolist())
    following = dict(zip(classes, classes[1:] + classes[:1], strict=True))
    changed[known] = labels[known].map(following)
    return changed


def _phase(name: str, summary: MonitorSummary, serving: str, task: Task) -> Phase:
    return Phase(
        name,
        summary.window_rows,
        summary.status,
        summary.drift_share,
        summary.quality.get(quality_metrics(task)[0]),
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
        f"{quality_metrics(result.task)[0]} (labels)",
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
            "" if p.quality is None else f"{p.quality:.3f}",
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
