"""The monitoring commands: ``monitor`` (one check of the latest window), ``retrain`` (on the
labelled rows) and ``retention`` (deleting old monitoring rows), and what they print."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_stack.cli.comparison import _comparison_line
from mlops_stack.cli.runtime import _stack, console
from mlops_stack.names import ACCURACY, F1, RetrainStatus
from mlops_stack.terminal import wrapped

if TYPE_CHECKING:
    from mlops_stack.flows.retrain import RetrainSummary


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
