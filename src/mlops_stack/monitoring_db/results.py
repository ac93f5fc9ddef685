"""Monitoring results in the monitoring database: runs, per-feature drift, alerts.

Rows, not files, so the dashboard can chart history with one query. The tables are created by
migration 0002; the models below mirror it. Alerts have a small life cycle: one row per
(model, condition) while the condition persists (``open``, its ``last_seen_at`` refreshed by
every run that still sees it), ``resolved`` when a run no longer sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from mlops_stack.monitoring_db.database import Base, JSONValue, MonitoringDB, UTCDateTime

ID = BigInteger().with_variant(Integer(), "sqlite")


class MonitorRunRow(Base):
    """One monitor run over a window of logged predictions (mirrors migration 0002)."""

    __tablename__ = "monitor_runs"
    __table_args__ = (Index("ix_monitor_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_rows: Mapped[int] = mapped_column(Integer)
    analysed_rows: Mapped[int] = mapped_column(Integer)
    sample_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    drift_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    prediction_drift_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    prediction_drifted: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    labelled_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    roc_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSONValue, nullable=True)
    quality: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONValue, nullable=True)
    report_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FeatureDriftRow(Base):
    """Drift of one feature in one monitor run (mirrors migration 0002)."""

    __tablename__ = "feature_drift"

    run_id: Mapped[int] = mapped_column(
        ID,
        ForeignKey(
            "monitor_runs.id", ondelete="CASCADE", name="fk_feature_drift_run_id_monitor_runs"
        ),
        primary_key=True,
    )
    feature: Mapped[str] = mapped_column(String(256), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)


class AlertRow(Base):
    """An alert: open while its condition persists, resolved when it clears."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_state", "state"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    condition: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    opened_by_run: Mapped[int | None] = mapped_column(ID, nullable=True)
    resolved_by_run: Mapped[int | None] = mapped_column(ID, nullable=True)
    notified: Mapped[bool] = mapped_column(Boolean, server_default=false())


@dataclass(frozen=True)
class AlertChange:
    """What a monitor run did to an alert: ``opened``, ``resolved`` or ``ongoing``."""

    change: str
    alert_id: int
    condition: str
    reason: str


class ResultStore:
    """Reads and writes monitoring results through a :class:`MonitoringDB`'s engine."""

    def __init__(self, store: MonitoringDB):
        self.engine = store.engine

    def save_run(self, run: MonitorRunRow, features: list[FeatureDriftRow]) -> int:
        """Store a run and its per-feature drift in one transaction; returns the run id."""
        with Session(self.engine) as session, session.begin():
            session.add(run)
            session.flush()
            for feature in features:
                feature.run_id = run.id
                session.add(feature)
            return run.id

    def runs(self, model_name: str | None = None, limit: int = 100) -> list[MonitorRunRow]:
        """The most recent runs, newest first."""
        query = select(MonitorRunRow).order_by(MonitorRunRow.id.desc()).limit(limit)
        if model_name:
            query = query.where(MonitorRunRow.model_name == model_name)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def feature_drift(self, run_id: int) -> list[FeatureDriftRow]:
        query = select(FeatureDriftRow).where(FeatureDriftRow.run_id == run_id)
        with Session(self.engine, expire_on_commit=False) as session:
            return sorted(session.scalars(query), key=lambda f: (not f.drifted, f.feature))

    def alerts(self, state: str | None = None) -> list[AlertRow]:
        query = select(AlertRow).order_by(AlertRow.id)
        if state:
            query = query.where(AlertRow.state == state)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def update_alerts(
        self, model_name: str, seen: dict[str, str], run_id: int
    ) -> list[AlertChange]:
        """Open, refresh or resolve alerts for the conditions this run saw.

        ``seen`` maps each condition present now (e.g. ``drift``) to its reason. A condition
        that already has an open alert does not open another: it is one alert until it clears.
        """
        now = datetime.now(UTC)
        changes: list[AlertChange] = []
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            query = (
                select(AlertRow)
                .where(AlertRow.model_name == model_name, AlertRow.state == "open")
                .with_for_update()
            )
            open_alerts = {a.condition: a for a in session.scalars(query)}
            for condition, alert in open_alerts.items():
                if condition in seen:
                    alert.last_seen_at, alert.reason = now, seen[condition]
                    changes.append(AlertChange("ongoing", alert.id, condition, alert.reason))
                else:
                    alert.state, alert.resolved_at, alert.resolved_by_run = "resolved", now, run_id
                    alert.notified = False
                    changes.append(AlertChange("resolved", alert.id, condition, alert.reason))
            for condition, reason in seen.items():
                if condition not in open_alerts:
                    alert = AlertRow(
                        model_name=model_name,
                        condition=condition,
                        state="open",
                        reason=reason,
                        opened_at=now,
                        last_seen_at=now,
                        opened_by_run=run_id,
                        notified=False,
                    )
                    session.add(alert)
                    session.flush()
                    changes.append(AlertChange("opened", alert.id, condition, reason))
        return changes

    def mark_notified(self, alert_id: int) -> None:
        with Session(self.engine) as session, session.begin():
            alert = session.get(AlertRow, alert_id)
            if alert is not None:
                alert.notified = True
