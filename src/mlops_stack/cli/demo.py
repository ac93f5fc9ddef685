"""``mlops demo``: its options checked, then the whole loop run embedded (``mlops_stack.demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops_stack.cli.defaults import _from_setting
from mlops_stack.cli.runtime import _fail, _prepare, console
from mlops_stack.settings import Settings


def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Fresh directory for the demo's state",
            show_default="a new demo-YYYYmmdd-HHMMSS in MLOPS_DATA_DIR, else in "
            f"{Settings.model_fields['data_dir'].default}",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="classification or regression. Alone, regression runs on the built-in "
            "diabetes table; with --data, the task of that table",
            show_default="classification on the built-in breast cancer table; with --data, "
            "inferred from its target",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your own CSV or Parquet table to run the loop on",
            show_default="the built-in table of --task",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Label column of --data", show_default=_from_setting("target_column")),
    ] = None,
) -> None:
    """Run the whole loop embedded, no Docker and no servers to install, and narrate it.

    Prints the settings it changes (with their defaults) and the scenario first. Trains a
    champion, starts the predictor, sends clean fresh rows (monitor: ok), then fresh rows whose
    labels follow a concept moved on the feature most related to the label (monitor:
    degradation, an alert, a retrain on the labelled rows, the gate's decision), and shows the
    predictor answering with the new version once a /predict answer names it. Ends with a
    summary table and where to look. Runs on the built-in breast cancer table, the built-in
    diabetes table (--task regression) or your own (--data FILE --target COLUMN;
    classification or regression).
    """
    settings = _prepare()
    from datetime import UTC, datetime

    from mlops_stack.data import DataValidationError
    from mlops_stack.demo import DemoTable, run_demo

    if target is not None and data is None:
        raise _fail("--target names a column of --data: give the table too", code=2)
    if task is not None and task not in ("classification", "regression"):
        raise _fail(f"--task {task!r}: use classification or regression", code=2)
    where = directory or settings.data_dir / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if where.exists():
        raise _fail(f"{where} exists: the demo starts from an empty directory", code=2)
    table = DemoTable.choose(data, target, task, settings)
    try:
        result = run_demo(where.resolve(), console, settings, table)
    except DataValidationError as exc:
        raise _fail(str(exc), code=2) from None
    first, last = result.versions
    if first == last:
        raise typer.Exit(1)
