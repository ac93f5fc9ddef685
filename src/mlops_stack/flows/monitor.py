"""The monitor flow: a window of logged predictions -> checks -> status -> stored -> alerts.

Streams the window from the monitoring database in one pass (``monitoring.window``): a uniform
random sample of at most ``MLOPS_MONITOR_MAX_ROWS`` rows is compared with the champion's
reference sample (drift), every row with its training schema (data quality) and every labelled
row with its holdout metrics (model quality: accuracy, F1 and ROC AUC of a classifier; RMSE,
MAE, R2 and error bias of a regressor, as the champion's schema says); the run's
``sample_note`` says what was sampled. A classifier's accuracy and F1 are also estimated from its
own probabilities over every row, labelled or not (``monitoring.estimate``), and over the
labelled rows alone, to set next to the realised figures on the same rows.
Every run is stored as rows (the dashboard's history) and as an MLflow run in the monitoring
experiment holding the Evidently HTML report; drift and degradation open alerts (database, log,
webhook) that resolve when the condition clears.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect.cache_policies import NO_CACHE

from mlops_stack import modelstore
from mlops_stack.data import DatasetSchema
from mlops_stack.flows.challenger import judge_challenger
from mlops_stack.flows.orchestration import flow, run_logger, task
from mlops_stack.flows.parameters import MonitorParameters, RetrainParameters
from mlops_stack.flows.retrain import RetrainSummary, retrain_flow
from mlops_stack.monitoring.checks import CheckResult, Reference, check_sample
from mlops_stack.monitoring.estimate import EstimatedQuality, stored_estimate
from mlops_stack.monitoring.quality import ModelQuality
from mlops_stack.monitoring.status import Status, Thresholds, classify
from mlops_stack.monitoring.window import COLUMNS, Window, read_window
from mlops_stack.monitoring_db import FeatureDriftRow, MonitorRunRow, WindowExtent
from mlops_stack.names import ACCURACY, F1, ROC_AUC, MonitorStatus, Task, quality_metrics
from mlops_stack.registry import version_of
from mlops_stack.stack import Stack, current_stack

REPORT_ARTIFACT = "reports"
DRIFT_REPORT = "drift_report.html"
QUALITY_REPORT = "quality_report.html"  # Evidently's regression report, a regressor's window


@dataclass(frozen=True)
class Champion:
    """What monitoring compares against: the champion's reference, schema and holdout."""

    version: str
    run_id: str
    schema: DatasetSchema
    reference: pd.DataFrame
    reference_predictions: pd.Series
    baseline: dict[str, float]

    @property
    def task(self) -> Task:
        return self.schema.task


@dataclass(frozen=True)
class MonitorSummary:
    """What one monitor run found, for the CLI, the demo and the tests."""

    run_id: int | None
    status: MonitorStatus
    reason: str
    model_version: str | None
    window_rows: int
    analysed_rows: int
    drift_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)
    labelled_rows: int = 0
    quality: dict[str, float | None] = field(default_factory=dict)  # the task's metrics
    alerts: list[str] = field(default_factory=list)
    report_uri: str | None = None
    quality_report_uri: str | None = None  # a regressor's window with labels: Evidently's
    sample_note: str | None = None
    retrain: RetrainSummary | None = None  # what the retrain flow did, when it ran
    # a classifier's estimated accuracy / F1, as stored in monitor_runs.estimated
    estimated: dict[str, float] = field(default_factory=dict)
    challenger: dict[str, Any] | None = None  # the shadow challenger vs the champion (JSON)


@task(cache_policy=NO_CACHE)
def load_champion(stack: Stack) -> Champion | None:
    """The champion's reference sample, schema, holdout metrics and reference predictions.

    The baseline is the holdout figures of the metrics judged for the schema's task; the
    reference predictions are classes as text, or a regressor's numbers.
    """
    registry = stack.registry
    mv = registry.champion()
    if mv is None:
        return None
    version, run_id = version_of(mv), str(mv.run_id)
    reference = modelstore.load_reference(run_id)
    pipeline = modelstore.load_pipeline(f"models:/{registry.model_name}/{version}")
    metrics = registry.run_metrics(mv)
    schema = modelstore.load_schema(run_id)
    predicted = pd.Series(pipeline.predict(reference))
    return Champion(
        version=version,
        run_id=run_id,
        schema=schema,
        reference=reference,
        reference_predictions=(
            predicted.astype(float) if schema.task is Task.REGRESSION else predicted.astype(str)
        ),
        baseline={k: metrics[k] for k in quality_metrics(schema.task) if k in metrics},
    )


def window_bounds(params: MonitorParameters) -> tuple[datetime | None, int | None]:
    """The window as ``(since, limit)``: the last T minutes if set, else the last N rows."""
    if params.window_minutes:
        return datetime.now(UTC) - timedelta(minutes=params.window_minutes), None
    return None, params.window_rows


@task(cache_policy=NO_CACHE)
def load_window(stack: Stack, params: MonitorParameters, champion: Champion) -> Window:
    """Stream this model's window once: a sample for drift, quality over every row."""
    since, limit = window_bounds(params)
    chunks = stack.monitor_store.window_chunks(
        since, limit, model_name=stack.settings.model_name, columns=COLUMNS
    )
    settings = stack.settings
    return read_window(
        chunks, champion.schema, max_rows=settings.monitor_max_rows, seed=settings.random_seed
    )


@task(cache_policy=NO_CACHE)
def check(
    stack: Stack, window: Window, champion: Champion, params: MonitorParameters
) -> CheckResult:
    """Drift on the window's sample; data and model quality as counted over the whole window."""
    return check_sample(
        Reference(champion.reference, champion.reference_predictions),
        window,
        champion.schema,
        max_rows=stack.settings.monitor_max_rows,
        seed=stack.settings.random_seed,
        drift_alpha=params.drift_alpha,
        drift_min_effect=params.drift_min_effect,
    )


@task(cache_policy=NO_CACHE)
def log_to_mlflow(
    stack: Stack, result: CheckResult, status: Status, champion: Champion
) -> tuple[str, dict[str, str]]:
    """A run in the monitoring experiment with the figures and the Evidently HTML reports.

    Returns the MLflow run id and the URI of each report logged (``DRIFT_REPORT``, and
    ``QUALITY_REPORT`` for a regressor's window with labels).
    """
    experiment = stack.registry.ensure_experiment(stack.settings.monitoring_experiment)
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor-{status.status}") as run:
        mlflow.set_tags(
            {
                "mlops.role": "monitor",
                "monitor.status": str(status.status),
                "model.name": stack.settings.model_name,
                "model.version": champion.version,
            }
        )
        mlflow.log_metrics(
            {
                "drift_share": result.drift_share,
                "window_rows": result.current_rows,
                "analysed_rows": result.analysed_rows,
            }
        )
        if result.model_quality is not None:
            measured = result.model_quality.metrics
            mlflow.log_metrics({k: v for k, v in measured.items() if v is not None})
        mlflow.log_metrics(
            _estimate_metrics(result.estimated, "")
            | _estimate_metrics(result.estimated_labelled, "_labelled")
        )
        reports = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, snapshot, save in (
                (DRIFT_REPORT, result.snapshot, result.save_html),
                (QUALITY_REPORT, result.quality_snapshot, result.save_quality_html),
            ):
                if snapshot is None:
                    continue
                path = Path(tmp) / name
                save(path)
                mlflow.log_artifact(str(path), artifact_path=REPORT_ARTIFACT)
                reports[name] = f"{run.info.artifact_uri}/{REPORT_ARTIFACT}/{name}"
    return run.info.run_id, reports


def _estimate_metrics(estimate: EstimatedQuality | None, suffix: str) -> dict[str, float]:
    """``estimated_accuracy``, ``estimated_f1`` (plus ``suffix``) and the rows they cover."""
    if estimate is None:
        return {}
    named = {f"estimated_{k}{suffix}": v for k, v in estimate.metrics.items()}
    return named | {f"estimated_rows{suffix}": float(estimate.rows)}


def _run_row(
    model_name: str,
    started: datetime,
    window: WindowExtent,
    status: Status,
    champion: Champion | None,
    result: CheckResult | None = None,
) -> MonitorRunRow:
    quality = result.model_quality if result else None
    prediction = result.prediction_drift if result else None
    row = MonitorRunRow(
        started_at=started,
        finished_at=datetime.now(UTC),
        model_name=model_name,
        model_version=champion.version if champion else None,
        window_start=window.start,
        window_end=window.end,
        window_rows=window.rows,
        analysed_rows=result.analysed_rows if result else 0,
        sample_note=result.sample_note if result else None,
        status=str(status.status),
        reason=status.reason,
        drift_share=result.drift_share if result else None,
        prediction_drift_score=prediction.score if prediction else None,
        prediction_drifted=prediction.drifted if prediction else None,
        quality=[asdict(q) for q in result.quality] if result else None,
        estimated=stored_estimate(result.estimated, result.estimated_labelled) if result else None,
    )
    _set_quality(row, champion.task if champion else None, quality)
    return row


def _set_quality(row: MonitorRunRow, task: Task | None, quality: ModelQuality | None) -> None:
    """The run's task and quality metrics by name; a classifier's also in the columns the
    dashboard's accuracy, F1 and ROC AUC charts read."""
    row.task = str(task) if task is not None else None
    row.labelled_rows = quality.labelled_rows if quality else 0
    row.metrics = dict(quality.metrics) if quality else None
    row.accuracy = quality.get(ACCURACY) if quality else None
    row.f1 = quality.get(F1) if quality else None
    row.roc_auc = quality.get(ROC_AUC) if quality else None


def _drift_rows(result: CheckResult) -> list[FeatureDriftRow]:
    return [
        FeatureDriftRow(
            feature=f.feature,
            kind=f.kind,
            method=f.method,
            threshold=f.threshold,
            score=f.score,
            drifted=f.drifted,
            effect=f.effect,
        )
        for f in result.features
    ]


def _skip(
    stack: Stack,
    champion: Champion | None,
    started: datetime,
    extent: WindowExtent,
) -> MonitorSummary:
    """Record a run that had nothing to check (no champion, too few rows) and say why."""
    name = stack.settings.model_name
    why = (
        "no champion yet: `mlops train` registers one"
        if champion is None
        else f"not enough data: {extent.rows} logged rows in the window, "
        f"{stack.settings.monitor_min_rows} needed (MLOPS_MONITOR_MIN_ROWS)"
    )
    version = champion.version if champion else None
    status = Status(MonitorStatus.SKIPPED, why, {})
    run_id = stack.monitor_store.save_run(_run_row(name, started, extent, status, champion), [])
    run_logger().info("monitor skipped: %s", why)
    return MonitorSummary(run_id, MonitorStatus.SKIPPED, why, version, extent.rows, 0)


def _challenger_comparison(
    stack: Stack, params: MonitorParameters, champion: Champion, mlflow_run: str
) -> dict[str, Any] | None:
    """The shadow challenger against the champion on the window's labelled rows, a winner
    promoted (``flows.challenger``); the comparison as stored, None without a challenger."""
    since, limit = window_bounds(params)
    comparison = judge_challenger(
        stack,
        champion_version=champion.version,
        schema=champion.schema,
        since=since,
        limit=limit,
        mlflow_run_id=mlflow_run,
    )
    return comparison.as_json() if comparison is not None else None


@flow(name="monitor")
def monitor_flow(params: MonitorParameters | None = None) -> MonitorSummary:
    """Check the latest window of logged predictions once; store, report and alert.

    ``params`` None takes every option from the settings (``MLOPS_*``); what is not a run's
    option (the sample's bounds and seed, the live promotion, the retrain's options) always
    comes from them.
    """
    stack = current_stack()
    params = params or MonitorParameters.from_settings(stack.settings)
    logger = run_logger()
    started = datetime.now(UTC)
    name = stack.settings.model_name
    champion = load_champion(stack)
    if champion is None:  # nothing to check: count the window in SQL, for the record
        since, limit = window_bounds(params)
        extent = stack.monitor_store.window_extent(since, limit, model_name=name)
        return _skip(stack, champion, started, extent)
    window = load_window(stack, params, champion)
    if window.extent.rows < stack.settings.monitor_min_rows:
        return _skip(stack, champion, started, window.extent)

    result = check(stack, window, champion, params)
    thresholds = Thresholds(
        params.drift_warning_share,
        params.drift_share,
        params.quality_drop,
        params.min_labelled,
        params.quality_error_rise,
    )
    status = classify(result, champion.baseline, thresholds)
    mlflow_run, reports = log_to_mlflow(stack, result, status, champion)
    report_uri = reports.get(DRIFT_REPORT)
    row = _run_row(name, started, window.extent, status, champion, result)
    row.baseline, row.report_uri, row.mlflow_run_id = champion.baseline, report_uri, mlflow_run
    challenger = _challenger_comparison(stack, params, champion, mlflow_run)
    if challenger is not None:
        row.challenger = challenger
    run_id = stack.monitor_store.save_run(row, _drift_rows(result))
    changes = stack.monitor_store.update_alerts(name, status.conditions, run_id)
    for sent in stack.notifier.alerts(changes, status=status.status, run_id=run_id):
        stack.monitor_store.mark_notified(sent.alert_id)
    logger.info("monitor run %s: %s (%s)", run_id, status.status, status.reason)
    retrain = None
    if params.retrain_enabled and status.conditions:
        retrain = retrain_flow(
            RetrainParameters.from_settings(stack.settings, trigger_reason=status.reason)
        )
    quality = result.model_quality
    return MonitorSummary(
        run_id=run_id,
        status=status.status,
        reason=status.reason,
        model_version=champion.version,
        window_rows=result.current_rows,
        analysed_rows=result.analysed_rows,
        drift_share=result.drift_share,
        drifted_features=result.drifted_features(),
        labelled_rows=quality.labelled_rows if quality else 0,
        quality=dict(quality.metrics) if quality else {},
        alerts=[f"{c.condition} {c.change}" for c in changes],
        report_uri=report_uri,
        quality_report_uri=reports.get(QUALITY_REPORT),
        sample_note=result.sample_note,
        retrain=retrain,
        estimated=stored_estimate(result.estimated, result.estimated_labelled) or {},
        challenger=challenger,
    )
