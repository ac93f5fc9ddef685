"""What the dashboard shows, read from the stack's stores as plain frames and dicts.

Kept apart from the Streamlit pages so the reads are testable without a browser and cached in
one place (``dashboard.cache``). Nothing here invents a figure: an empty store gives an empty
frame, and the page says what would fill it. Every read of the monitoring database takes a
:class:`Scope` (model, time window, model version): the filters all pages honour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
from sqlalchemy import func, select

from mlops_stack import modelstore, registry
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.monitoring_db.database import PREDICTIONS
from mlops_stack.monitoring_db.results import AlertRow, MonitorRunRow, ResultStore
from mlops_stack.settings import Settings

RUN_COLUMNS = (
    "id", "started_at", "model_version", "status", "reason", "window_start", "window_end",
    "window_rows", "analysed_rows", "drift_share", "labelled_rows", "accuracy", "f1", "roc_auc",
    "baseline", "sample_note", "report_uri", "mlflow_run_id",
)  # fmt: skip
ALERT_COLUMNS = ("id", "condition", "reason", "opened_at", "last_seen_at")
ALERT_HISTORY_COLUMNS = (
    "id", "condition", "state", "reason", "opened_at", "last_seen_at", "resolved_at",
    "opened_by_run", "resolved_by_run",
)  # fmt: skip
LATENCY_ROWS = 100_000  # latency percentiles over at most the newest this many rows
FEATURE_ROWS = 5_000  # a feature's current distribution from at most this many rows


@dataclass(frozen=True)
class Scope:
    """The filters every page honours: one model, since when, which version (None: all)."""

    model_name: str
    since: datetime | None = None
    version: str | None = None


def model_versions(settings: Settings) -> pd.DataFrame:
    """Registry versions, newest first, with aliases, holdout metrics and the gate's decision."""
    registry.use_tracking(settings)
    rows = registry.describe_versions(registry.client_for(settings), settings.model_name)
    frame = pd.DataFrame([asdict(row) for row in rows])
    if frame.empty:
        return frame
    metrics = pd.json_normalize(frame.pop("metrics").tolist())
    frame["aliases"] = frame["aliases"].map(", ".join)
    return pd.concat([frame, metrics], axis=1)


@dataclass(frozen=True)
class ChampionInfo:
    """The champion and since when it serves: what the gate or a rollback recorded."""

    version: str
    since: str | None  # ISO time; None when nothing recorded it
    how: str  # "promoted by the gate", "promoted by hand", "restored by rollback from v3"
    previous: str | None  # the version a rollback would restore


def champion(settings: Settings) -> ChampionInfo | None:
    """The version holding the served alias, and when and how it got it (its tags say)."""
    registry.use_tracking(settings)
    client = registry.client_for(settings)
    mv = registry.version_by_alias(client, settings.model_name, settings.model_alias)
    if mv is None:
        return None
    tags = mv.tags
    restored_from = tags.get("mlops.restored_by_rollback_from")
    since, how = tags.get("gate.decided_at"), "promoted by the gate"
    if tags.get("gate.decision") == "promoted-by-hand":
        how = "promoted by hand"
    if restored_from:  # a rollback stamped the version it left; that is when this one returned
        left = registry.get_version(client, settings.model_name, restored_from.lstrip("v"))
        since, how = left.tags.get("mlops.rolled_back_at", since), f"restored from {restored_from}"
    return ChampionInfo(
        registry.version_of(mv), since, how, tags.get(registry.PREVIOUS_TAG) or None
    )


def _scoped_runs(scope: Scope, limit: int):
    query = select(MonitorRunRow).where(MonitorRunRow.model_name == scope.model_name)
    if scope.since is not None:
        query = query.where(MonitorRunRow.started_at >= scope.since)
    if scope.version is not None:
        query = query.where(MonitorRunRow.model_version == scope.version)
    return query.order_by(MonitorRunRow.id.desc()).limit(limit)


def monitor_runs(store: MonitoringDB, scope: Scope, limit: int = 500) -> pd.DataFrame:
    """Monitor runs in scope, oldest first (one chart point each)."""
    from sqlalchemy.orm import Session

    with Session(store.engine, expire_on_commit=False) as session:
        runs = list(session.scalars(_scoped_runs(scope, limit)))
    frame = pd.DataFrame([{c: getattr(run, c) for c in RUN_COLUMNS} for run in runs])
    frame = frame.reindex(columns=list(RUN_COLUMNS))
    return frame.sort_values("started_at").reset_index(drop=True)


def feature_drift(store: MonitoringDB, run_id: int) -> pd.DataFrame:
    """One run's per-feature drift, most drifted first (severity: log10 past its threshold).

    P-values (drift = small) and distances (drift = large) are ranked on one scale by the
    monitor's own :attr:`FeatureDrift.severity`, so the top row is the most shifted feature.
    """
    from mlops_stack.monitoring.checks import FeatureDrift

    rows = ResultStore(store).feature_drift(run_id)
    columns = ["feature", "kind", "method", "threshold", "score", "drifted", "severity"]
    frame = pd.DataFrame(
        [
            {
                **{c: getattr(r, c) for c in columns[:-1]},
                "severity": FeatureDrift(*(getattr(r, c) for c in columns[:-1])).severity,
            }
            for r in rows
        ],
        columns=columns,
    )
    return frame.sort_values(["severity", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )


def open_alerts(store: MonitoringDB, model_name: str) -> pd.DataFrame:
    """Alerts of one model whose condition still holds (whatever the time filter says)."""
    alerts = [a for a in ResultStore(store).alerts(state="open") if a.model_name == model_name]
    frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_COLUMNS} for a in alerts])
    return frame.reindex(columns=list(ALERT_COLUMNS))


def alert_history(store: MonitoringDB, scope: Scope) -> pd.DataFrame:
    """Every alert of the model still seen since ``scope.since``, newest first, with how long
    it was open (to its resolution, or until now for an open one)."""
    from sqlalchemy.orm import Session

    query = select(AlertRow).where(AlertRow.model_name == scope.model_name)
    if scope.since is not None:
        query = query.where(AlertRow.last_seen_at >= scope.since)
    with Session(store.engine, expire_on_commit=False) as session:
        alerts = list(session.scalars(query.order_by(AlertRow.id.desc())))
    frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_HISTORY_COLUMNS} for a in alerts])
    frame = frame.reindex(columns=list(ALERT_HISTORY_COLUMNS))
    end = frame["resolved_at"].fillna(pd.Timestamp(datetime.now(UTC)))
    frame["open_for"] = pd.to_datetime(end, utc=True) - pd.to_datetime(frame["opened_at"], utc=True)
    return frame


def traffic(store: MonitoringDB, scope: Scope, now: datetime | None = None) -> dict[str, int]:
    """Logged prediction rows: last hour, last day, in the chosen window, all time (one scan)."""
    now = now or datetime.now(UTC)
    created = PREDICTIONS.c.created_at
    query = select(
        func.count().filter(created >= now - timedelta(hours=1)).label("last_hour"),
        func.count().filter(created >= now - timedelta(days=1)).label("last_day"),
        func.count().filter(created >= (scope.since or datetime.min)).label("window"),
        func.count().label("total"),
    ).where(*_prediction_filters(scope, with_since=False))
    with store.engine.connect() as connection:
        return dict(connection.execute(query).mappings().one())


def _prediction_filters(scope: Scope, with_since: bool = True) -> list:
    filters = [PREDICTIONS.c.model_name == scope.model_name]
    if with_since and scope.since is not None:
        filters.append(PREDICTIONS.c.created_at >= scope.since)
    if scope.version is not None:
        filters.append(PREDICTIONS.c.model_version == scope.version)
    return filters


def latency(store: MonitoringDB, scope: Scope) -> dict[str, float] | None:
    """p50/p95 of the logged model latency in scope (newest LATENCY_ROWS rows); None if none."""
    query = (
        select(PREDICTIONS.c.latency_ms)
        .where(*_prediction_filters(scope))
        .order_by(PREDICTIONS.c.created_at.desc())
        .limit(LATENCY_ROWS)
    )
    with store.engine.connect() as connection:
        values = np.array(connection.execute(query).scalars().all(), dtype=float)
    if not values.size:
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "rows": int(values.size)}


def labelled(store: MonitoringDB, scope: Scope) -> pd.DataFrame:
    """Predictions in scope that have a true label: ``created_at``, ``prediction``, ``label``."""
    frame = store.predictions_with_feedback(
        scope.since, model_name=scope.model_name, labelled_only=True
    )
    if scope.version is not None:
        frame = frame[frame["model_version"] == scope.version]
    return frame[["created_at", "model_version", "prediction", "label"]].astype(
        {"prediction": str, "label": str}
    )


def confusion(labelled_rows: pd.DataFrame) -> pd.DataFrame:
    """Counts of (true label, prediction); rows: labels, columns: predictions."""
    if labelled_rows.empty:
        return pd.DataFrame()
    return pd.crosstab(
        labelled_rows["label"].rename("true label"),
        labelled_rows["prediction"].rename("predicted"),
    )


def current_values(
    store: MonitoringDB, model_name: str, start: datetime | None, end: datetime | None, feature: str
) -> pd.Series:
    """One feature's logged values in a monitor run's window [start, end] (newest
    FEATURE_ROWS rows): what the run compared with the reference."""
    empty = pd.Series(dtype=object, name=feature)
    if start is None:
        return empty
    chunks = list(
        store.window_chunks(start, FEATURE_ROWS, model_name=model_name, columns=("created_at",))
    )
    frame = pd.concat(chunks) if chunks else pd.DataFrame()
    if frame.empty or feature not in frame:
        return empty
    if end is not None:
        frame = frame[frame["created_at"] <= pd.Timestamp(end)]
    return frame[feature].rename(feature)


def reference_values(settings: Settings, version: str, feature: str) -> pd.Series:
    """One feature of the reference sample logged with ``version`` (what drift compares with)."""
    registry.use_tracking(settings)
    mv = registry.get_version(registry.client_for(settings), settings.model_name, version)
    path = mlflow.artifacts.download_artifacts(f"runs:/{mv.run_id}/{modelstore.REFERENCE_ARTIFACT}")
    return pd.read_parquet(path, columns=[feature])[feature]


def report_html(settings: Settings, report_uri: str) -> str:
    """The Evidently HTML report a monitor run logged to MLflow."""
    registry.use_tracking(settings)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=report_uri)).read_text()


def error_rate(api_url: str, timeout: float = 3.0) -> dict[str, float]:
    """Requests to /predict* answered with 5xx, from the predictor's /metrics (since it started).

    The predictor logs only the predictions it made; a failed request leaves no row, so its
    Prometheus counters are the one place that counts failures.
    """
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{api_url.rstrip('/')}/metrics", timeout=timeout)
    answer.raise_for_status()
    total = errors = 0.0
    for family in text_string_to_metric_families(answer.text):
        if family.name != "mlops_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and "predict" in sample.labels.get("route", ""):
                total += sample.value
                errors += sample.value if sample.labels.get("status", "").startswith("5") else 0
    return {"requests": total, "errors": errors, "rate": errors / total if total else 0.0}
