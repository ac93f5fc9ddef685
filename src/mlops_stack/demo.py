"""`mlops demo`: the whole loop, embedded, in one command, with what happens at each step.

It drives the real parts only (the train flow, the predictor over HTTP, the traffic simulator,
the monitor and retrain flows, the gate) in a fresh data directory, on the built-in
classification table, the built-in regression table (``--task regression``) or the user's own
(``--data``). Traffic is fresh rows of the table (:mod:`mlops_stack.synthetic`), never repeated.

The scenario, stated before any traffic is sent: after a clean phase, a concept shift alone.
The inputs come from the same population; the class boundary on the feature most related to
the label moves ``CONCEPT_STDS`` standard deviations (:class:`~mlops_stack.synthetic.
ConceptShift`; for a number, the feature's effect on the target grows), so only the labels
show it (:class:`Scenario` says why not with a covariate shift too). Nothing in the loop knows
it is a demo: every setting the demo changes is printed with its default first, and each
status, alert, retrain decision and version is printed only once the loop reached it.
"""

from __future__ import annotations

import itertools
import logging
import math
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
from mlops_stack.metrics import shown
from mlops_stack.names import RetrainStatus, Task, holdout_metrics, quality_metrics
from mlops_stack.settings import Settings
from mlops_stack.stack import Stack, install
from mlops_stack.terminal import table_or_records, wrapped

if TYPE_CHECKING:
    from mlops_stack.data import Dataset
    from mlops_stack.flows.retrain import RetrainSummary
    from mlops_stack.simulate import Traffic
    from mlops_stack.synthetic import ConceptShift
    from mlops_stack.training import Split

# The demo's own embedded stack: a fresh directory, whatever the environment points at.
EMBEDDED = {
    "redis_url": None,
    "monitoring_db_url": None,
    "tracking_uri": None,
    "artifact_location": None,
}
TUNED = {"reload_poll_seconds": 1.0}
"""Settings the demo changes (printed with their defaults): the predictor looks for a new
champion every second, so the version switch shows within the run."""
KEPT = (
    "monitor_min_rows",
    "monitor_min_labelled",
    "drift_share",
    "quality_drop",
    "quality_error_rise",
    "retrain_min_labelled",
    "retrain_cooldown_minutes",
    "gate_min_improvement",
    "candidates",
)
"""Settings the loop's outcome depends on that the demo leaves as configured (printed too)."""
CONCEPT_STDS = 1.0
"""How far the class boundary on the chosen feature moves, in its stds (for a number: target
stds gained per std of the feature)."""
LABEL_MARGIN = 1.2
"""Each phase carries this many times MLOPS_RETRAIN_MIN_LABELLED labelled rows (expected)."""
DETAIL = 3
"""Indent of what a step found, under the step's line."""


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
    return base.model_copy(update={"data_dir": directory, **EMBEDDED, **TUNED, **data})


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
    from mlops_stack.flows.parameters import MonitorParameters, TrainParameters
    from mlops_stack.flows.train import train_flow
    from mlops_stack.simulate import split_like_training

    settings = stack.settings
    task = infer_task(dataset.labels, settings.task)  # as the train flow infers it
    result = DemoResult(directory, task=task)
    rows = phase_rows(settings)
    changed: dict[str, object] = {"retrain_enabled": True, "monitor_window_rows": rows}
    _print_settings(console, settings, changed)
    held = split_like_training(dataset, settings)
    scenario = Scenario.choose(dataset, task)
    wrapped(console, f"scenario: {scenario.describe(dataset)}")
    step = _stepper(console)

    step(f"1. train a champion on {_describe(dataset, task)}")
    trained = train_flow(TrainParameters.from_settings(settings))
    metric = holdout_metrics(task)[0]
    wrapped(
        console,
        f"v{trained.version} ({trained.candidate}): {trained.reason}; "
        f"holdout {metric} {shown(trained.metrics[metric], 3)}",
        indent=DETAIL,
    )
    monitor = MonitorParameters.from_settings(settings, window_rows=rows, retrain_enabled=True)

    with _predictor(stack) as base:
        step(f"2. predictor serving v{_serving_version(base)} at {base}")
        clean = scenario.traffic(dataset, held, rows, seed=1, shifted=False)
        step(f"3. clean traffic: {rows} fresh rows, {clean.labelled} with their true labels")
        serving = _send(console, base, clean)
        first = monitor_flow(monitor)
        result.phases.append(_phase("clean traffic", first, serving, task))
        _print_monitor(console, first)

        shifted = scenario.traffic(dataset, held, rows, seed=2, shifted=True)
        step(
            f"4. concept-shifted traffic: {rows} fresh rows, {shifted.labelled} with labels, "
            f"{shifted.relabelled} of them changed by the moved concept"
        )
        serving = _send(console, base, shifted)
        drifted = monitor_flow(monitor)
        _print_monitor(console, drifted)
        retrain = drifted.retrain
        after = serving
        if retrain is not None and retrain.status == RetrainStatus.PROMOTED:
            after = _await_version(console, step, base, scenario.probe(dataset, held), retrain)
        result.phases.append(_phase("concept shift", drifted, after, task))
        result.versions = (trained.version, after)
        result.reports = [p for p in (first.report_uri, drifted.report_uri) if p]
    _summary(console, result, settings)
    return result


def _print_monitor(console: Console, summary: MonitorSummary) -> None:
    """What a monitor run found, its alerts and its retrain, as the run returned them."""
    wrapped(console, f"monitor: {summary.status} - {summary.reason}", indent=DETAIL)
    for alert in summary.alerts:
        wrapped(console, f"alert: {alert}", indent=DETAIL)
    if summary.retrain is not None:
        retrain = summary.retrain
        wrapped(console, f"retrain: {retrain.status} - {retrain.reason}", indent=DETAIL)


def phase_rows(settings: Settings) -> int:
    """Rows per phase: enough that the labelled ones (a ``test_size`` share: those drawn from
    held-out rows) clear MLOPS_RETRAIN_MIN_LABELLED with a margin, and the window its minimum."""
    needed = math.ceil(LABEL_MARGIN * settings.retrain_min_labelled / settings.test_size)
    return max(settings.monitor_min_rows, needed)


def _print_settings(console: Console, settings: Settings, changed: dict[str, object]) -> None:
    """Every setting the demo changes, with its default, then those it keeps, in one block."""
    fields = Settings.model_fields
    console.print("settings the demo changes (MLOPS_* variables; default in brackets):")
    for name, value in {**changed, **TUNED}.items():
        console.print(
            f"   {_env(name)}={_shown(value)} [default {_shown(fields[name].default)}]",
            highlight=False,
            markup=False,
        )
    wrapped(
        console,
        f"and its own embedded stack in the demo directory (MLOPS_DATA_DIR; "
        f"{', '.join(_env(n) for n in EMBEDDED)} unset)",
        indent=DETAIL,
    )
    kept = ", ".join(f"{_env(n)}={_shown(getattr(settings, n))}" for n in KEPT)
    wrapped(console, f"settings as configured: {kept}")


def _env(name: str) -> str:
    return f"MLOPS_{name.upper()}"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _send(console: Console, base: str, traffic: Traffic) -> str:
    """Send ``traffic`` with its labels; print what answered; the version that answered last
    (the one named by the /predict answers)."""
    from mlops_stack.simulate import Simulator

    rows = len(traffic.features)
    report = Simulator(base, traffic.features, traffic.labels, rate=0).run(rows)
    versions = ", ".join(f"v{v} {n}" for v, n in report.versions.items())
    wrapped(
        console,
        f"sent {report.sent} in {report.seconds:.1f}s: {report.answered} answered "
        f"({versions}), {report.failed} failed; labels accepted {report.labels_sent}",
        indent=DETAIL,
    )
    return report.last_version or ""


def _await_version(
    console: Console,
    step: Callable[[str], None],
    base: str,
    probe: pd.DataFrame,
    retrain: RetrainSummary,
) -> str:
    """Send fresh rows to /predict until an answer names the promoted version (or a minute
    passes); print what was observed. The version the last answer named."""
    from mlops_stack.simulate import Simulator

    promoted = str(retrain.version)
    started = time.monotonic()
    deadline = started + 60
    seen = ""
    with httpx.Client(base_url=base, timeout=10) as client:
        for index in itertools.cycle(range(len(probe))):
            features = Simulator.json_row(probe.iloc[index])
            answer = client.post("/predict", json={"features": features})
            seen = str(answer.json()["model"]["version"]) if answer.status_code == 200 else seen
            if seen == promoted or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the predictor reloads in the background; ask again shortly
    waited = time.monotonic() - started
    if seen == promoted:
        step(
            f"5. the predictor answers with v{seen}: a /predict answer named it {waited:.1f}s "
            "after the retrain returned, without a restart"
        )
    else:
        wrapped(
            console,
            f"the predictor still answered with v{seen} {waited:.0f}s after v{promoted} "
            "was promoted",
            indent=DETAIL,
        )
    return seen


@dataclass(frozen=True)
class Scenario:
    """The second phase's change: a concept shift alone. The inputs come from the same
    population as before (no covariate shift, so feature drift should stay quiet); the class
    boundary on ``feature`` moves ``CONCEPT_STDS`` (for a number: its effect on the target
    grows), so only the labels can show it.

    Alone, because a covariate shift with the source rows' labels (``mlops simulate
    --drift``'s assumption: the shift is in what is measured) degrades the model by itself:
    tried together on the built-in table, the shift took accuracy to 0.44 while the concept
    changed 4 of 107 labels, and the story "the concept moved" would have been false.
    """

    feature: str

    @classmethod
    def choose(cls, dataset: Dataset, task: Task) -> Scenario:
        """The numeric feature most correlated with the label (for classes: with being in the
        most common class), the one a moved concept on it changes most."""
        from mlops_stack.simulate import is_numeric

        features = dataset.features
        numeric = [str(c) for c in features.columns if is_numeric(features[c])]
        if not numeric:
            from mlops_stack.data import DataValidationError, Problem

            problem = "the demo moves the concept on a numeric feature; the table has none"
            raise DataValidationError([Problem(dataset.target, problem)])
        labels = dataset.labels
        if task is Task.REGRESSION:
            outcome = labels.astype(float)
        else:
            outcome = (labels == labels.value_counts().index[0]).astype(float)
        strength = features[numeric].astype(float).corrwith(outcome).abs().fillna(0.0)
        return cls(str(strength.idxmax()))

    def concept(self, dataset: Dataset) -> ConceptShift:
        from mlops_stack.simulate import Concept

        return Concept(self.feature, CONCEPT_STDS).fit(dataset)

    def describe(self, dataset: Dataset) -> str:
        return (
            "a clean phase, then a concept shift alone (the inputs come from the same "
            f"population; only the labels can show it): {self.concept(dataset).describe()}"
        )

    def traffic(
        self, dataset: Dataset, held: Split, rows: int, *, seed: int, shifted: bool
    ) -> Traffic:
        from mlops_stack.simulate import fresh_traffic

        concept = self.concept(dataset) if shifted else None
        return fresh_traffic(dataset, held, rows, seed=seed, concept=concept)

    def probe(self, dataset: Dataset, held: Split) -> pd.DataFrame:
        """Fresh rows to ask the predictor which version answers."""
        return self.traffic(dataset, held, 50, seed=3, shifted=False).features


def _describe(dataset: Dataset, task: Task) -> str:
    source = {
        BUILTIN_DATASET: "the built-in breast cancer table",
        BUILTIN_REGRESSION_DATASET: "the built-in diabetes table",
    }.get(dataset.source, dataset.source)
    rows, features = len(dataset.frame), dataset.frame.shape[1] - 1
    return f"{source} ({rows} rows, {features} columns besides '{dataset.target}', {task})"


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
        # wrapped lines start under the text, after the elapsed time
        wrapped(console, f"[{time.monotonic() - started:5.1f}s] {text}", hanging=9)

    return step


def _summary(console: Console, result: DemoResult, settings: Settings) -> None:
    table = Table(title="what the loop did")
    headers = (
        "phase",
        "rows",
        "status",
        "drift share",
        f"{quality_metrics(result.task)[0]} (labels)",
        "retrain",
        "serving after",
    )
    for column in headers:
        table.add_column(column)
    rows = [
        [
            p.name,
            str(p.rows),
            p.status,
            "" if p.drift_share is None else f"{p.drift_share:.0%}",
            "" if p.quality is None else f"{p.quality:.3f}",
            p.note,
            f"v{p.serving}",
        ]
        for p in result.phases
    ]
    for row in rows:
        table.add_row(*row)
    table_or_records(console, table, rows)
    first, last = result.versions
    console.print(f"champion: v{first} -> v{last}", highlight=False)
    wrapped(console, f"state: {result.directory} (stamped {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    console.print("MLflow UI:", highlight=False)
    # a command to copy: whole on its line, however long (the terminal wraps it, not us)
    console.print(
        f"  mlflow ui --backend-store-uri {settings.resolved_tracking_uri}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for report in result.reports:
        wrapped(console, f"drift report: {report}")
