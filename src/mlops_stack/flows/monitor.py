"""The monitor flow: a window of logged predictions -> checks -> status -> stored -> alerts.

Streams the window from the monitoring database in one pass (``monitoring.window``): a uniform
random sample of at most ``MLOPS_MONITOR_MAX_ROWS`` rows is compared with the champion's
reference sample (drift), every row with its training schema (data quality) and every labelled
row with its holdout metrics (model quality); the run's ``sample_note`` says what was sampled.
Every run is stored as rows (the dashboard's history) and as an MLflow run in the monitoring
experiment holding the Evidently HTML report; drift and degradation open alerts (database, log,
webhook) that resolve when the condition clears.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlops_stack import modelstore, registry
from mlops_stack.data import DatasetSchema
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.monitoring_db.database import WindowExtent
from mlops_stack.monitoring_db.results import FeatureDriftRow, MonitorRunRow, ResultStore
from mlops_stack.monitoring import alerts
from mlops_stack.monitoring.checks import CheckResult, run_checks
from mlops_stack.monitoring.status import Status, Thresholds, classify
from mlops_stack.monitoring.window import COLUMNS, Window, read_window
from mlops_stack.settings import Settings, get_settings

REPORT_ARTIFACT = "reports"


@dataclass(frozen=True)
class Champion:
    """What monitoring compares against: the champion's reference, schema and holdout."""

    version: str
    run_id: str
    schema: DatasetSchema
    reference: pd.DataFrame
    reference_predictions: pd.Series
    baseline: dict[str, float]


@dataclass
class MonitorSummary:
    """What one monitor run found, for the CLI, the demo and the retrain flow."""

    run_id: int | None
    status: str
    reason: str
    model_version: str | None
    window_rows: int
    analysed_rows: int
    drift_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)
    labelled_rows: int = 0
    quality: dict[str, float | None] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    report_uri: str | None = None
    sample_note: str | None = None
    retrain: dict[str, object] | None = None  # what the retrain flow did, when it ran

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@task(cache_policy=NO_CACHE)
def load_champion(settings: Settings) -> Champion | None:
    """The champion's reference sample, schema, holdout metrics and reference predictions."""
    client = registry.client_for(settings)
    mv = registry.version_by_alias(client, settings.model_name, settings.model_alias)
    if mv is None:
        return None
    version = registry.version_of(mv)
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(f"runs:/{mv.run_id}/{modelstore.REFERENCE_ARTIFACT}")
    )
    pipeline = modelstore.load_pipeline(f"models:/{settings.model_name}/{version}")
    metrics = client.get_run(mv.run_id).data.metrics
    return Champion(
        version=version,
        run_id=mv.run_id,
        schema=modelstore.load_schema(mv.run_id),
        reference=reference,
        reference_predictions=pd.Series(pipeline.predict(reference)).astype(str),
        baseline={k: metrics[k] for k in ("accuracy", "f1", "roc_auc") if k in metrics},
    )


def window_bounds(settings: Settings) -> tuple[datetime | None, int | None]:
    """The window as ``(since, limit)``: the last T minutes if set, else the last N rows."""
    if settings.monitor_window_minutes:
        return datetime.now(UTC) - timedelta(minutes=settings.monitor_window_minutes), None
    return None, settings.monitor_window_rows


@task(cache_policy=NO_CACHE)
def load_window(store: MonitoringDB, settings: Settings, champion: Champion) -> Window:
    """Stream this model's window once: a sample for drift, quality over every row."""
    since, limit = window_bounds(settings)
    return read_window(
        store.window_chunks(since, limit, model_name=settings.model_name, columns=COLUMNS),
        champion.schema,
        max_rows=settings.monitor_max_rows,
        seed=settings.random_seed,
    )


@task(cache_policy=NO_CACHE)
def check(window: Window, champion: Champion, settings: Settings) -> CheckResult:
    """Drift on the window's sample; data and model quality as counted over the whole window."""
    return run_checks(
        champion.reference,
        window.features,
        champion.schema,
        current_predictions=window.predictions,
        reference_predictions=champion.reference_predictions,
        classes=champion.schema.classes,
        max_rows=settings.monitor_max_rows,
        seed=settings.random_seed,
        whole=window.whole,
    )


@task(cache_policy=NO_CACHE)
def log_to_mlflow(
    result: CheckResult, status: Status, champion: Champion, settings: Settings
) -> tuple[str, str | None]:
    """A run in the monitoring experiment with the figures and the Evidently HTML report."""
    experiment = registry.ensure_experiment(settings, settings.monitoring_experiment)
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor-{status.status}") as run:
        mlflow.set_tags(
            {
                "mlops.role": "monitor",
                "monitor.status": status.status,
                "model.name": settings.model_name,
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
            quality = result.model_quality
            mlflow.log_metrics(
                {
                    k: v
                    for k, v in (
                        ("accuracy", quality.accuracy),
                        ("f1", quality.f1),
                        ("roc_auc", quality.roc_auc),
                    )
                    if v is not None
                }
            )
        report_uri = None
        if result.snapshot is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "drift_report.html"
                result.save_html(path)
                mlflow.log_artifact(str(path), artifact_path=REPORT_ARTIFACT)
            report_uri = f"{run.info.artifact_uri}/{REPORT_ARTIFACT}/drift_report.html"
    return run.info.run_id, report_uri


def _run_row(
    settings: Settings,
    started: datetime,
    window: WindowExtent,
    status: Status,
    version: str | None,
    result: CheckResult | None = None,
) -> MonitorRunRow:
    quality = result.model_quality if result else None
    prediction = result.prediction_drift if result else None
    return MonitorRunRow(
        started_at=started,
        finished_at=datetime.now(UTC),
        model_name=settings.model_name,
        model_version=version,
        window_start=window.start,
        window_end=window.end,
        window_rows=window.rows,
        analysed_rows=result.analysed_rows if result else 0,
        sample_note=result.sample_note if result else None,
        status=status.status,
        reason=status.reason,
        drift_share=result.drift_share if result else None,
        prediction_drift_score=prediction.score if prediction else None,
        prediction_drifted=prediction.drifted if prediction else None,
        labelled_rows=quality.labelled_rows if quality else 0,
        accuracy=quality.accuracy if quality else None,
        f1=quality.f1 if quality else None,
        roc_auc=quality.roc_auc if quality else None,
        quality=[asdict(q) for q in result.quality] if result else None,
    )


@flow(name="monitor")
def monitor_flow() -> dict[str, object]:
    """Check the latest window of logged predictions once; store, report and alert."""
    settings = get_settings()
    logger = get_run_logger()
    started = datetime.now(UTC)
    registry.use_tracking(settings)
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    store.migrate()
    results = ResultStore(store)
    champion = load_champion(settings)
    window = load_window(store, settings, champion) if champion else None
    if window is not None:
        extent = window.extent
    else:  # nothing to check: count the window in SQL, for the record
        since, limit = window_bounds(settings)
        extent = store.window_extent(since, limit, model_name=settings.model_name)
    version = champion.version if champion else None
    if champion is None or window is None or extent.rows < settings.monitor_min_rows:
        why = (
            "no champion yet: `mlops train` registers one"
            if champion is None
            else f"not enough data: {extent.rows} logged rows in the window, "
            f"{settings.monitor_min_rows} needed (MLOPS_MONITOR_MIN_ROWS)"
        )
        status = Status("skipped", why, {})
        run_id = results.save_run(_run_row(settings, started, extent, status, version), [])
        logger.info("monitor skipped: %s", why)
        store.dispose()
        return MonitorSummary(run_id, "skipped", why, version, extent.rows, 0).to_dict()

    result = check(window, champion, settings)
    status = classify(result, champion.baseline, Thresholds.from_settings(settings))
    mlflow_run, report_uri = log_to_mlflow(result, status, champion, settings)
    row = _run_row(settings, started, extent, status, version, result)
    row.baseline, row.report_uri, row.mlflow_run_id = champion.baseline, report_uri, mlflow_run
    run_id = results.save_run(
        row,
        [
            FeatureDriftRow(
                feature=f.feature,
                kind=f.kind,
                method=f.method,
                threshold=f.threshold,
                score=f.score,
                drifted=f.drifted,
            )
            for f in result.features
        ],
    )
    changes = results.update_alerts(settings.model_name, status.conditions, run_id)
    alerts.notify(
        changes,
        results,
        model=settings.model_name,
        webhook_url=settings.alert_webhook_url,
        status=status.status,
        run_id=run_id,
    )
    logger.info("monitor run %s: %s (%s)", run_id, status.status, status.reason)
    store.dispose()
    retrain = None
    if settings.retrain_enabled and status.conditions:
        from mlops_stack.flows.retrain import retrain_flow

        retrain = retrain_flow(trigger_reason=status.reason)
    quality = result.model_quality
    return MonitorSummary(
        run_id=run_id,
        status=status.status,
        reason=status.reason,
        model_version=version,
        window_rows=result.current_rows,
        analysed_rows=result.analysed_rows,
        drift_share=result.drift_share,
        drifted_features=result.drifted_features(),
        labelled_rows=quality.labelled_rows if quality else 0,
        quality={"accuracy": quality.accuracy, "f1": quality.f1, "roc_auc": quality.roc_auc}
        if quality
        else {},
        alerts=[f"{c.condition} {c.change}" for c in changes],
        report_uri=report_uri,
        sample_note=result.sample_note,
        retrain=retrain,
    ).to_dict()
