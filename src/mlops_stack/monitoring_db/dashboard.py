"""The dashboard's side of the monitoring database: every read a page shows, filtered by a scope.

:class:`DashboardReads` answers the dashboard's questions as plain frames and dicts (runs as
chart points, per-feature drift, alerts open and past, traffic counts, latency percentiles,
labelled rows, one feature's values in a window); each read takes a :class:`Scope` (model, time
window, model version), the filters every page honours. Nothing here invents a figure: an empty
database gives an empty frame, and the page says what would fill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mlops_stack.monitoring_db.engine import Database
from mlops_stack.monitoring_db.monitor import MonitorStore
from mlops_stack.monitoring_db.tables import (
    PREDICTIONS,
    SHADOW_PREDICTIONS,
    AlertRow,
    MonitorRunRow,
)
from mlops_stack.monitoring_db.window_frames import features
from mlops_stack.names import AlertState


@dataclass(frozen=True)
class Scope:
    """The filters the dashboard's reads honour: one model, since when, which version."""

    model_name: str
    since: datetime | None = None
    version: str | None = None


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
DRIFT_COLUMNS = ("feature", "kind", "method", "threshold", "score", "drifted", "effect")
# Results of a run newer than RUN_COLUMNS (the task, the quality figures by metric name, the
# estimated accuracy / F1 of migration 0005): read when the table has them, None for runs stored
# before (see monitor_run_results_frame).
RESULT_COLUMNS = ("id", "task", "metrics", "estimated")
LATENCY_ROWS = 100_000  # latency percentiles over at most the newest this many rows


class DashboardReads:
    """The dashboard's reads of the monitoring database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.monitor = MonitorStore(database)

    def shadow_rows(self, model_name: str, version: str) -> int:
        """How many rows ``version`` of the model answered in shadow, all time (the dashboard)."""
        self.database.ensure_schema()
        query = select(func.count()).where(
            SHADOW_PREDICTIONS.c.model_name == model_name,
            SHADOW_PREDICTIONS.c.model_version == str(version),
        )
        with self.database.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def monitor_runs_frame(self, scope: Scope, limit: int = 500) -> pd.DataFrame:
        """Monitor runs in scope, oldest first (one chart point each): :data:`RUN_COLUMNS`."""
        runs = self._runs_in_scope(scope, limit)
        frame = pd.DataFrame([{c: getattr(run, c) for c in RUN_COLUMNS} for run in runs])
        frame = frame.reindex(columns=list(RUN_COLUMNS))
        return frame.sort_values("started_at").reset_index(drop=True)

    def feature_drift_frame(self, run_id: int) -> pd.DataFrame:
        """One run's per-feature drift as a frame: :data:`DRIFT_COLUMNS` (``effect`` None for runs
        stored before migration 0005)."""
        rows = self.monitor.feature_drift(run_id)
        records = [{c: getattr(r, c) for c in DRIFT_COLUMNS} for r in rows]
        return pd.DataFrame(records, columns=list(DRIFT_COLUMNS))

    def open_alerts_frame(self, model_name: str) -> pd.DataFrame:
        """Alerts of one model whose condition still holds: :data:`ALERT_COLUMNS`."""
        alerts = self.monitor.alerts(state=AlertState.OPEN, model_name=model_name)
        frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_COLUMNS} for a in alerts])
        return frame.reindex(columns=list(ALERT_COLUMNS))

    def alert_history_frame(self, scope: Scope) -> pd.DataFrame:
        """Every alert of the model still seen since ``scope.since``, newest first, with how
        long it was open (to its resolution, or until now for an open one)."""
        self.database.ensure_schema()
        query = select(AlertRow).where(AlertRow.model_name == scope.model_name)
        if scope.since is not None:
            query = query.where(AlertRow.last_seen_at >= scope.since)
        with Session(self.database.engine, expire_on_commit=False) as session:
            alerts = list(session.scalars(query.order_by(AlertRow.id.desc())))
        frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_HISTORY_COLUMNS} for a in alerts])
        frame = frame.reindex(columns=list(ALERT_HISTORY_COLUMNS))
        end = frame["resolved_at"].fillna(pd.Timestamp(datetime.now(UTC)))
        opened = pd.to_datetime(frame["opened_at"], utc=True)
        frame["open_for"] = pd.to_datetime(end, utc=True) - opened
        return frame

    def traffic(self, scope: Scope, now: datetime | None = None) -> dict[str, int]:
        """Logged prediction rows: last hour, last day, in the window, all time (one scan)."""
        self.database.ensure_schema()
        now = now or datetime.now(UTC)
        created = PREDICTIONS.c.created_at
        query = select(
            func.count().filter(created >= now - timedelta(hours=1)).label("last_hour"),
            func.count().filter(created >= now - timedelta(days=1)).label("last_day"),
            func.count().filter(created >= (scope.since or datetime.min)).label("window"),
            func.count().label("total"),
        ).where(*prediction_filters(scope, with_since=False))
        with self.database.engine.connect() as connection:
            return {k: int(v) for k, v in connection.execute(query).mappings().one().items()}

    def latency(self, scope: Scope) -> dict[str, float] | None:
        """p50/p95 of the logged model latency in scope (newest LATENCY_ROWS); None if none."""
        self.database.ensure_schema()
        query = (
            select(PREDICTIONS.c.latency_ms)
            .where(*prediction_filters(scope))
            .order_by(PREDICTIONS.c.created_at.desc())
            .limit(LATENCY_ROWS)
        )
        with self.database.engine.connect() as connection:
            values = np.array(connection.execute(query).scalars().all(), dtype=float)
        if not values.size:
            return None
        p50, p95 = np.percentile(values, [50, 95])
        return {"p50_ms": float(p50), "p95_ms": float(p95), "rows": int(values.size)}

    def labelled_frame(self, scope: Scope) -> pd.DataFrame:
        """Predictions in scope with a true label: created_at, model_version, prediction, label."""
        frame = self.monitor.predictions_with_feedback(
            scope.since, model_name=scope.model_name, labelled_only=True
        )
        if scope.version is not None:
            frame = frame[frame["model_version"] == scope.version]
        columns = ["created_at", "model_version", "prediction", "label"]
        return frame[columns].astype({"prediction": str, "label": str})

    def monitor_run_results_frame(self, scope: Scope, limit: int = 500) -> pd.DataFrame:
        """Per monitor run in scope: its model's task and its quality figures by metric name.

        Columns :data:`RESULT_COLUMNS` (``metrics`` a dict such as ``{"rmse": ..., "mae": ...}``;
        ``estimated`` a classifier's ``{"accuracy": ..., "f1": ..., "rows": ...}``, see
        ``monitoring.estimate.stored_estimate``).
        Kept apart from :meth:`monitor_runs_frame` and read by attribute so that a database
        whose runs predate these columns (or a model class without them) reads as None.
        """
        runs = self._runs_in_scope(scope, limit)
        frame = pd.DataFrame([{c: getattr(run, c, None) for c in RESULT_COLUMNS} for run in runs])
        return frame.reindex(columns=list(RESULT_COLUMNS))

    def _runs_in_scope(self, scope: Scope, limit: int) -> list[MonitorRunRow]:
        """The newest ``limit`` monitor runs of the scope's model (and window, and version)."""
        self.database.ensure_schema()
        query = select(MonitorRunRow).where(MonitorRunRow.model_name == scope.model_name)
        if scope.since is not None:
            query = query.where(MonitorRunRow.started_at >= scope.since)
        if scope.version is not None:
            query = query.where(MonitorRunRow.model_version == scope.version)
        query = query.order_by(MonitorRunRow.id.desc()).limit(limit)
        with Session(self.database.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def run_data_quality(self, run_id: int) -> list[dict[str, Any]]:
        """One run's per-feature data quality as the monitor stored it (``quality`` JSON):
        missing share, out-of-range count, unseen categories and examples; empty when none."""
        self.database.ensure_schema()
        query = select(MonitorRunRow.quality).where(MonitorRunRow.id == run_id)
        with Session(self.database.engine) as session:
            stored = session.scalar(query)
        return [dict(item) for item in stored or [] if isinstance(item, dict)]

    def feature_values(
        self,
        model_name: str,
        start: datetime | None,
        end: datetime | None,
        feature: str,
        limit: int,
    ) -> pd.Series:
        """One feature's logged values in [start, end] (the newest ``limit`` rows from start)."""
        empty = pd.Series(dtype=object, name=feature)
        if start is None:
            return empty
        chunks = list(
            self.monitor.window_chunks(start, limit, model_name=model_name, columns=("created_at",))
        )
        frame = pd.concat(chunks) if chunks else pd.DataFrame()
        if frame.empty:
            return empty
        if end is not None:
            frame = frame[frame["created_at"] <= pd.Timestamp(end)]
        values = features(frame, [feature])[feature]
        return empty if values.isna().all() else values.rename(feature)


def prediction_filters(scope: Scope, with_since: bool = True) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [PREDICTIONS.c.model_name == scope.model_name]
    if with_since and scope.since is not None:
        filters.append(PREDICTIONS.c.created_at >= scope.since)
    if scope.version is not None:
        filters.append(PREDICTIONS.c.model_version == scope.version)
    return filters
