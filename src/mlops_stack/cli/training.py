"""The model commands: ``train`` (the train flow and the gate), ``models`` (the registry's
versions), ``promote`` and ``rollback`` (moving 'champion' by hand), and what they print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from mlops_stack.cli.comparison import _print_live_comparison
from mlops_stack.cli.defaults import _from_setting
from mlops_stack.cli.runtime import _fail, _stack, console
from mlops_stack.metrics import shown
from mlops_stack.names import LATENCY_P95, holdout_metrics
from mlops_stack.terminal import Line, fields, fits, records, wrapped

if TYPE_CHECKING:
    from mlops_stack.data import ColumnTreatment
    from mlops_stack.flows.train import TrainResult
    from mlops_stack.registry import VersionRow


def train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="CSV or Parquet table to train on",
            show_default=_from_setting("dataset_path", "the built-in breast cancer table"),
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Label column of the table", show_default=_from_setting("target_column")),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="auto, classification or regression; auto infers it from the target",
            show_default=_from_setting("task"),
        ),
    ] = None,
) -> None:
    """Train candidate models, register the best in MLflow and let the gate decide.

    Runs the Prefect train flow: validate the data and decide each column, infer the task
    (or take --task), split it (seeded; stratified for classes), train and cross-validate each
    candidate pipeline, score them on the holdout, log every run to MLflow, register the best
    as a new version, then give it the alias 'champion' if it stays within the gate's bounds
    and beats the current champion on the same holdout, or 'challenger' if not.
    """
    stack = _stack()
    settings = stack.settings
    from mlops_stack.data import DataValidationError, infer_task, load_dataset, validate_dataset
    from mlops_stack.flows.parameters import TrainParameters
    from mlops_stack.gate import GateConfigError, resolve_metric

    overrides = {"data_path": str(data)} if data else {}
    if task is not None:
        if task not in ("auto", "classification", "regression"):
            raise _fail(f"--task {task!r}: use auto, classification or regression", code=2)
        overrides["task"] = task
    params = TrainParameters.from_settings(
        settings, **overrides, target=target or settings.target_column
    )
    try:
        # Fail fast, before the flow runs: a bad table is refused in a second with every
        # problem named, not as a task's traceback. The flow validates again, because
        # deployments run it without this command.
        dataset = load_dataset(params.data_path, params.target)
        validate_dataset(
            dataset,
            task=infer_task(dataset.labels, params.task),
            min_rows=params.min_rows,
            min_class_rows=params.min_class_rows,
        )
        # a gate metric of the other task (roc_auc for a numeric target) is refused here too
        resolve_metric(params.gate.metric, infer_task(dataset.labels, params.task))
    except (DataValidationError, GateConfigError) as exc:
        raise _fail(str(exc), code=2) from None
    del dataset  # the flow loads its own copy; a large table is not held twice
    from mlops_stack.flows.train import train_flow

    with stack:
        result = train_flow(params)
    _print_holdout(result)
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    wrapped(console, f"v{result.version} {verdict}: {result.reason}")
    console.print(f"champion is now v{result.champion_after}", highlight=False)
    _print_columns(result.columns)


def _print_holdout(result: TrainResult) -> None:
    """The new version's holdout metrics: a one-row table (72 columns wide for a classifier),
    or the same figures as one wrapped line on a terminal narrower than that."""
    columns = (*holdout_metrics(result.task), LATENCY_P95)
    title = f"{result.model_name} v{result.version} ({result.candidate})"
    figures = [shown(result.metrics[c]) for c in columns]  # None: undefined on the holdout
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*figures)
    if fits(console, table):
        console.print(table)
    else:
        console.print(Text(f"{title}, holdout metrics"))
        console.print(records(console, [("", fields(columns, figures))]))


def _print_columns(columns: list[ColumnTreatment]) -> None:
    """One line per column not kept as it came (dropped, bounded, coerced, booleans), so a
    user sees what training made of their table; the same list is in the model's schema."""
    noted = [c for c in columns if not c.plain]
    if noted:
        console.print(
            f"columns ({len(noted)} of {len(columns)} not kept as they came):", highlight=False
        )
    for column in noted:
        wrapped(console, str(column), indent=2)


def models() -> None:
    """List the registered versions: aliases, task, holdout metrics and the gate's decision.

    Each version shows its own task's metrics (accuracy, F1, ROC AUC for a classifier; RMSE,
    MAE, R^2 for a regressor), when it was created and the gate's reason. A terminal too
    narrow for the table (80 columns) gets one block per version instead.
    """
    stack = _stack()
    settings = stack.settings
    rows = stack.registry.describe()  # a read: creates no experiment
    if not rows:
        console.print(f"no versions of '{settings.model_name}' yet: run `mlops train` first")
        return
    title = f"{settings.model_name} ({settings.resolved_tracking_uri})"
    table = _versions_table(title, rows)
    if fits(console, table):
        console.print(table)
        for row in rows:  # newest first, like the table
            wrapped(console, f"v{row.version}, {_created(row)}: {row.reason or row.decision}")
    else:
        console.print(Text(title))  # a tracking URI longer than a line is folded
        console.print(
            records(
                console, [(f"v{row.version}", _version_lines(row)) for row in rows], spaced=True
            )
        )
    _print_live_comparison(stack)


def _versions_table(title: str, rows: list[VersionRow]) -> Table:
    """One line per version, a column per metric of the tasks listed (blank where a version's
    task has no such metric); the reasons follow the table."""
    metrics = list(dict.fromkeys(name for row in rows for name in row.metrics))
    table = Table(title=title)
    for column in ("v", "aliases", "task", "candidate"):
        table.add_column(column, no_wrap=True)
    for metric in metrics:
        table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    for row in rows:
        figures = [f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics]
        cells = [row.version, ", ".join(row.aliases), row.task, row.candidate, *figures]
        table.add_row(*(Text(cell) for cell in (*cells, row.decision)))
    return table


def _version_lines(row: VersionRow) -> list[Line]:
    """A version as a narrow block: roles and model, metrics, the gate's decision and why."""
    roles = ", ".join(row.aliases) or "no alias"
    figures = [f"{name} {value:.4f}" for name, value in row.metrics.items()]
    why = row.reason or row.decision
    return [
        f"{roles}; {row.task}, {row.candidate}",
        figures,
        f"{row.decision}, {_created(row)}: {why}",
    ]


def _created(row: VersionRow) -> str:
    return row.created_at.replace("T", " ").removesuffix("+00:00") + " UTC"


def promote(
    version: Annotated[
        int, typer.Argument(help="Model version to make champion", metavar="VERSION")
    ],
) -> None:
    """Make VERSION the champion by hand, bypassing the gate (recorded on the version)."""
    from mlops_stack.registry import RegistryError

    try:
        previous = _stack().registry.promote(version)  # announces the change to predictors
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"v{version} is champion (was v{previous or 'none'}); `mlops rollback` undoes this",
        highlight=False,
    )


def rollback() -> None:
    """Give 'champion' back to the version the current champion replaced."""
    from mlops_stack.registry import RegistryError

    try:
        done = _stack().registry.rollback()  # announces the change to predictors
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"champion rolled back: v{done.from_version} -> v{done.to_version}", highlight=False
    )
