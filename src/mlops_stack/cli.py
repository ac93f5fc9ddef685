"""``mlops``: one command for every part of the stack.

Each stack service is a subcommand of this CLI so that one image runs them all. Heavy imports
(MLflow, Prefect, scikit-learn) happen inside the commands: ``mlops --help`` stays instant, and
Prefect's environment is prepared from the settings before Prefect is first imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlops_stack.metrics import shown
from mlops_stack.names import ACCURACY, F1, LATENCY_P95, RetrainStatus, holdout_metrics
from mlops_stack.settings import Settings, get_settings
from mlops_stack.terminal import Line, fields, fits, records, wrapped

if TYPE_CHECKING:
    from mlops_stack.data import ColumnTreatment
    from mlops_stack.flows.retrain import RetrainSummary
    from mlops_stack.flows.train import TrainResult
    from mlops_stack.registry import VersionRow
    from mlops_stack.simulate import Traffic
    from mlops_stack.stack import Stack


def _from_setting(name: str, unset: object | None = None) -> str:
    """An option's shown default when its default is a setting: the setting's variable, and
    what applies when that is not set either (the setting's own default, or ``unset``)."""
    default = Settings.model_fields[name].default if unset is None else unset
    return f"MLOPS_{name.upper()}, else {default}"


# Markdown: a docstring's paragraphs are wrapped in the source and re-flowed by Rich to the
# terminal's width (Typer's "rich" mode keeps the source's line breaks and wraps them again).
HELP_MARKUP: Literal["markdown"] = "markdown"

app = typer.Typer(
    name="mlops",
    help=(
        "The local-first MLOps stack: train, register and gate models in MLflow, and run the "
        "stack's services. Every option is also an MLOPS_* environment variable "
        "(see .env.example)."
    ),
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _prepare() -> Settings:
    """Settings with the process environment (logging, Prefect home) set up from them."""
    from pydantic import ValidationError

    from mlops_stack.logs import configure_logging

    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "\n".join(
            f"  - MLOPS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"invalid settings:\n{problems}", code=2) from None
    except ValueError as exc:  # a MLOPS_*_FILE that cannot be read
        raise _fail(f"invalid settings: {exc}", code=2) from None
    settings.prepare_environment()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _stack() -> Stack:
    """The process's composition root, built from valid settings and installed for the flows."""
    return _installed(_prepare())


def _installed(settings: Settings) -> Stack:
    from mlops_stack.stack import Stack, install

    stack = Stack(settings)
    install(stack)
    return stack


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
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


@app.command()
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


def _print_live_comparison(stack: Stack) -> None:
    """The latest monitor run's champion-challenger comparison on live rows, in one line; no
    line when there is none, or when the monitoring database cannot be read (the registry
    listing above stands on its own)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        found = stack.monitoring.latest_comparison(stack.settings.model_name)
    except SQLAlchemyError:
        return
    if found is None:
        return
    run, comparison = found
    wrapped(console, f"live (monitor run {run.id}): {_comparison_line(comparison)}")


def _comparison_line(comparison: dict[str, Any]) -> str:
    """A stored champion-challenger comparison in words and figures, on one line."""
    metric = comparison.get("metric", "")
    figures = [(comparison.get(side) or {}).get(metric) for side in ("challenger", "champion")]
    versus = " vs ".join("n/a" if v is None else f"{v:.4f}" for v in figures)
    return (
        f"v{comparison.get('version')} vs champion v{comparison.get('champion_version')} on "
        f"{comparison.get('labelled_rows')} labelled rows, {metric} {versus}: "
        f"{comparison.get('decision')}"
    )


@app.command()
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


@app.command()
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


@app.command()
def monitor() -> None:
    """Check the latest window of logged predictions once: drift, data and model quality.

    Compares the window (MLOPS_MONITOR_WINDOW_ROWS or _MINUTES) with the champion's reference
    sample and training schema, and, where labels came back through /feedback, its holdout
    metrics. Prints the status (ok, warning, drift, degraded, or skipped with the reason),
    stores the run in the monitoring database, logs the Evidently report to MLflow, and opens
    or resolves alerts (MLOPS_ALERT_WEBHOOK_URL).
    """
    stack = _stack()
    from mlops_stack.flows.monitor import monitor_flow

    with stack:
        summary = monitor_flow()
    # one item per paragraph, its wrapped lines indented under its first
    wrapped(console, f"status: {summary.status} - {summary.reason}")
    wrapped(
        console,
        f"model v{summary.model_version}, window {summary.window_rows} rows, "
        f"analysed {summary.analysed_rows}, labelled {summary.labelled_rows}",
    )
    if summary.estimated:
        wrapped(console, _estimate_line(summary.estimated, summary.quality))
    if summary.sample_note:
        wrapped(console, summary.sample_note)
    for change in summary.alerts:
        wrapped(console, f"alert {change}")
    if summary.report_uri:
        wrapped(console, f"report: {summary.report_uri}")
    if summary.quality_report_uri:
        wrapped(console, f"quality report: {summary.quality_report_uri}")
    if summary.challenger:
        wrapped(console, _comparison_line(summary.challenger))
    if summary.retrain:
        _print_retrain(summary.retrain)


def _estimate_line(estimated: dict[str, float], realised: dict[str, float | None]) -> str:
    """The classifier's accuracy / F1 estimated from its probabilities (no labels needed), and
    the realised figures on the labelled rows next to the estimate on those same rows."""
    from mlops_stack.monitoring.estimate import LABELLED, ROWS

    line = (
        f"estimated from the model's probabilities: accuracy {estimated[ACCURACY]:.3f}, "
        f"f1 {estimated[F1]:.3f} over {int(estimated[ROWS])} rows"
    )
    labelled = LABELLED + ROWS
    if labelled in estimated and realised.get(ACCURACY) is not None:
        line += (
            f"; on the {int(estimated[labelled])} labelled rows: estimated accuracy "
            f"{estimated[LABELLED + ACCURACY]:.3f}, realised {realised[ACCURACY]:.3f}"
        )
    return line


def _print_retrain(result: RetrainSummary) -> None:
    wrapped(console, f"retrain: {result.status} - {result.reason}")
    if result.status != RetrainStatus.SKIPPED:
        wrapped(
            console,
            f"v{result.version} trained on the original data + "
            f"{result.labelled_rows - result.evaluation_rows} labelled rows, gated on "
            f"{result.evaluation_rows} fresh ones; champion v{result.champion_before} -> "
            f"v{result.champion_after}",
        )


@app.command()
def retrain() -> None:
    """Retrain now on the original data plus the rows labelled through /feedback.

    Half of the labelled rows join the training table; the other half is where the gate
    compares the new candidate with the champion. Respects MLOPS_RETRAIN_COOLDOWN_MINUTES and
    MLOPS_RETRAIN_MIN_LABELLED; `mlops monitor` starts it by itself when
    MLOPS_RETRAIN_ENABLED=true and it finds drift or degradation.
    """
    stack = _stack()
    from mlops_stack.flows.retrain import retrain_flow

    with stack:
        _print_retrain(retrain_flow())


@app.command()
def retention() -> None:
    """Delete monitoring rows older than MLOPS_RETENTION_DAYS once (0 keeps everything).

    Predictions with their labels and shadow answers, monitor runs with their drift, resolved
    alerts; in transactions of MLOPS_RETENTION_BATCH_ROWS rows. The stack's worker does this
    every hour; embedded (SQLite), run this from cron.
    """
    stack = _stack()
    from mlops_stack.flows.retention import retention_flow

    with stack:
        summary = retention_flow()
    if summary.skipped or summary.cutoff is None:  # off, or another pass held the lock
        wrapped(console, summary.skipped or "nothing deleted")
        return
    counts = ", ".join(f"{name} {count}" for name, count in summary.deleted.items())
    wrapped(console, f"deleted rows older than {summary.cutoff:%Y-%m-%d %H:%M:%S} UTC: {counts}")


@app.command()
def simulate(
    url: Annotated[
        str | None,
        typer.Option(
            help="Predictor base URL",
            show_default="from MLOPS_API_HOST and MLOPS_API_PORT, else "
            f"http://{Settings.model_fields['api_host'].default}:"
            f"{Settings.model_fields['api_port'].default}",
        ),
    ] = None,
    rows: Annotated[int, typer.Option(help="Requests to send", min=1, metavar="N")] = 500,
    rate: Annotated[float, typer.Option(help="Requests per second (0: as fast as possible)")] = 20,
    drift: Annotated[
        list[str] | None,
        typer.Option(
            help="Covariate drift, repeatable: FEATURE:shift=STDS, FEATURE:scale=FACTOR or "
            "FEATURE:mix=CATEGORY@SHARE (see above)",
            metavar="SPEC",
            show_default="none: the table's population",
        ),
    ] = None,
    concept: Annotated[
        str | None,
        typer.Option(
            help="Concept shift: FEATURE:threshold=STDS (see above)",
            metavar="SPEC",
            show_default="none: the table's labels",
        ),
    ] = None,
    label_delay: Annotated[
        float, typer.Option(help="Seconds before each row's true label goes to /feedback")
    ] = 0.0,
    labels: Annotated[bool, typer.Option(help="Send the true labels to /feedback")] = True,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Table the rows come from",
            show_default=_from_setting("dataset_path", "the built-in table"),
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Label column", show_default=_from_setting("target_column")),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the fresh rows, their order and category mixing")
    ] = 0,
) -> None:
    """Send fresh rows of the table to the predictor over HTTP, optionally shifted, with labels.

    Every row is new: drawn from the whole table with a small jitter (a smoothed bootstrap), so
    none repeats. Only rows drawn from the holdout of the split training makes carry a label
    (the model has not seen them; labels of rows near training rows would flatter its
    quality). --drift shifts the population, --concept moves the relationship between a
    feature and the label; both are printed before anything is sent.

    --drift FEATURE:shift=STDS moves the population: FEATURE by STDS standard deviations and
    every numeric feature correlated with it in proportion (corr x STDS of its own);
    FEATURE:scale=FACTOR multiplies one numeric feature; FEATURE:mix=CATEGORY@SHARE sets that
    share of rows to CATEGORY. Labels stay the source rows': the shift is in what is measured,
    the true outcome is unchanged.

    --concept FEATURE:threshold=STDS moves the class boundary on FEATURE (the best single cut
    of it in the table) by STDS standard deviations, and the sent rows between the two cuts
    change class; for a numeric target, FEATURE's effect on it grows by STDS target stds per
    std of FEATURE.
    """
    settings = _prepare()
    from mlops_stack.data import DataValidationError, load_dataset
    from mlops_stack.simulate import (
        Concept,
        SimulationError,
        Simulator,
        fresh_traffic,
        parse_drifts,
        split_like_training,
    )

    try:
        drifts = parse_drifts(drift or [])
        wanted = Concept.parse(concept) if concept else None
        dataset = load_dataset(data or settings.dataset_path, target or settings.target_column)
        held_out = split_like_training(dataset, settings)
        moved = wanted.fit(dataset) if wanted else None
        traffic = fresh_traffic(dataset, held_out, rows, seed=seed, drifts=drifts, concept=moved)
    except (SimulationError, DataValidationError) as exc:
        raise _fail(str(exc), code=2) from None
    _print_traffic(traffic, labels)
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    simulator = Simulator(
        base,
        traffic.features,
        traffic.labels if labels else None,
        rate=rate,
        label_delay=label_delay,
    )
    report = simulator.run(rows)
    versions = ", ".join(f"v{version} {count}" for version, count in report.versions.items())
    # two short lines: scripts read these figures, a wrap inside one would break them
    wrapped(
        console,
        f"sent {report.sent} in {report.seconds:.1f}s: {report.answered} answered "
        f"({versions or 'none'}), {report.failed} failed",
    )
    wrapped(console, f"labels accepted {report.labels_sent}, unknown {report.labels_unknown}")
    if report.unlogged:
        wrapped(
            console,
            f"note: {report.unlogged} answered rows were not logged yet after 30 s "
            "(GET /ready: prediction_log); a monitor run now would not count them",
        )
    if report.errors:
        wrapped(console, f"errors: {dict(report.errors)}")
    if report.failed:
        raise typer.Exit(1)


def _print_traffic(traffic: Traffic, labels: bool) -> None:
    """What the traffic is, before it is sent: fresh rows, what moved, the concept, labels."""
    rows = len(traffic.features)
    wrapped(console, f"{rows} fresh rows (none repeated)")
    if len(traffic.moved):
        moved = traffic.movements()
        listed = ", ".join(f"{feature} {stds:+.2f}" for feature, stds in moved)
        wrapped(
            console,
            f"population shift: {len(moved)} of {len(traffic.moved)} numeric features move by "
            f"0.1 std or more (in stds): {listed}",
        )
    if traffic.concept is not None:
        wrapped(console, f"concept shift: {traffic.concept.describe()}")
    if labels:
        changed = f", {traffic.relabelled} changed by the concept" if traffic.concept else ""
        wrapped(
            console,
            f"labels: {traffic.labelled} of {rows} rows (those drawn from held-out rows{changed})",
        )


@app.command()
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


serve_app = typer.Typer(
    help="Run a stack service in the foreground (each is one process of the one image).",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)
app.add_typer(serve_app, name="serve")


@serve_app.command("api")
def serve_api(
    host: Annotated[
        str | None, typer.Option(help="Listen address", show_default=_from_setting("api_host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port", show_default=_from_setting("api_port"))
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="uvicorn worker processes; 0: one per usable CPU (affinity, cgroup quota)",
            show_default=_from_setting("api_workers"),
            min=0,
            max=32,
            metavar="N",
        ),
    ] = None,
) -> None:
    """Serve the registry's champion over HTTP (FastAPI + uvicorn).

    POST /predict and /predict/batch answer with the prediction, class probabilities, model
    version and request id; POST /feedback takes true labels; GET /health, /ready, /model,
    /metrics and /docs describe the service. Every answered row is logged to the monitoring
    database (through Redis when MLOPS_REDIS_URL is set). When the alias moves, the new
    version is loaded in the background and swapped in without failing a request.
    """
    settings = _prepare()
    import uvicorn

    host, port = host or settings.api_host, port or settings.api_port
    from mlops_stack.serving.workers import worker_count

    workers = worker_count(workers if workers is not None else settings.api_workers)
    from mlops_stack.serving.access import configured_keys

    try:  # fail here, with the reason, rather than in every worker process
        configured_keys(settings)
    except ValueError as exc:
        raise _fail(str(exc), code=2) from None
    from mlops_stack.serving.multiprocess import metrics_directory

    # before anything imports prometheus_client: it reads PROMETHEUS_MULTIPROC_DIR at import
    with metrics_directory(workers):
        if workers > 1:
            uvicorn.run(
                "mlops_stack.serving.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_config=None,
                access_log=False,
            )
        else:
            from mlops_stack.serving.app import create_app

            uvicorn.run(
                create_app(_installed(settings)),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
            )
    _exit_after_clean_shutdown()


def _exit_after_clean_shutdown() -> None:
    """Exit 0 at once after the server stopped cleanly, skipping the interpreter's teardown.

    Why: the predictor's stop (SIGTERM) has already closed everything it holds in its
    lifespan (prediction log flushed, stack closed), and tearing down its ~3,400 imported
    modules costs 1.5 s of CPU, several seconds of `docker stop` on a busy VM, which every
    step of a rolling update waits for. The worker processes of ``--workers N`` end the same
    way (multiprocessing). A failed start never gets here: uvicorn exits with its own code.
    """
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command("log-writer")
def log_writer() -> None:
    """Drain the Redis prediction stream into the monitoring database, until stopped.

    Reads MLOPS_PREDICTION_STREAM as a member of the consumer group MLOPS_STREAM_GROUP,
    writes batches idempotently and acknowledges only what was committed, so nothing is lost
    while the database is down: entries wait in the stream and are written when it returns.
    """
    settings = _prepare()
    if not settings.redis_url:
        raise _fail(
            "MLOPS_REDIS_URL is not set: without Redis the predictor writes its "
            "predictions itself and there is no stream to drain",
            code=2,
        )
    import signal
    import threading

    from mlops_stack.prediction_log.stream import StreamWriter
    from mlops_stack.stack import Stack

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Stack(settings) as stack:
        StreamWriter(settings, stack.monitoring).run_forever(stop)


@app.command()
def worker() -> None:
    """Serve the flows as Prefect deployments and drain the prediction stream, until stopped.

    Deployments: train/train and retrain/retrain (on demand), monitor/monitor (every
    MLOPS_MONITOR_INTERVAL_MINUTES). With MLOPS_REDIS_URL it also writes the prediction stream
    into the monitoring database, and with MLOPS_BOOTSTRAP_CHAMPION it starts one train run
    when the registry has no champion. Needs a Prefect server (MLOPS_PREFECT_API_URL).
    """
    settings = _prepare()
    if not settings.prefect_api_url:
        raise _fail(
            "MLOPS_PREFECT_API_URL is not set: deployments need a Prefect server "
            "(embedded, run `mlops train` / `mlops monitor` directly)",
            code=2,
        )
    from mlops_stack.worker import run_worker

    run_worker(_installed(settings))


api_key_app = typer.Typer(
    help="Predictor API keys (MLOPS_API_KEYS).", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("new")
def api_key_new(
    name: Annotated[
        str, typer.Argument(help="Who the key is for; shown in logs and limits", metavar="NAME")
    ],
) -> None:
    """Make a key: prints the key (give it to the client, once) and the line to store.

    The stored line holds only the key's SHA-256; append it to the MLOPS_API_KEYS file
    (secrets/api_keys on a VM) and restart the api service.
    """
    from mlops_stack.serving.access import KeyRing, digest, new_api_key

    key = new_api_key()
    line = f"{name}:{digest(key)}"
    try:
        KeyRing.parse(line)
    except ValueError:
        raise _fail("a key name is 1-64 of A-Z a-z 0-9 _ . @ -", code=2) from None
    # each value alone on its line, never wrapped: it is copied whole
    for label, value in (
        ("key (X-API-Key header; shown once):", key),
        ("line for MLOPS_API_KEYS:", line),
    ):
        console.print(label, highlight=False)
        console.print(f"  {value}", highlight=False, markup=False, soft_wrap=True)


@serve_app.command("dashboard")
def serve_dashboard(
    port: Annotated[int, typer.Option(help="Listen port")] = 8501,
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    base_path: Annotated[
        str,
        typer.Option(
            help="Path prefix behind a reverse proxy, e.g. 'dashboard'",
            show_default="none: served at /",
        ),
    ] = "",
) -> None:
    """Serve the Streamlit dashboard: champion, status and drift from the stack's stores, and
    the stack's landing page at <base-path>/status."""
    _prepare()  # fail early on bad settings; the Streamlit script reads the same environment
    import os
    import sys

    # dashboard/server.py: the pages (app.py) and the landing page's routes, one ASGI app
    script = Path(__file__).parent / "dashboard" / "server.py"
    argv = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    if base_path:
        argv += ["--server.baseUrlPath", base_path.strip("/")]
    os.execv(sys.executable, argv)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
