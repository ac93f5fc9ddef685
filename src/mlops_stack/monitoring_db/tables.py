"""The monitoring database's tables, as SQLAlchemy models mirroring the Alembic migrations.

The schema is created only by the migrations in ``migrations/`` (run by
:meth:`~mlops_stack.monitoring_db.Database.migrate`); these models describe it for queries.
Only :mod:`mlops_stack.monitoring_db` imports them: every query against these tables lives in
one of its stores.

Alerts have a small life cycle: one row per (model, condition) while the condition persists
(``open``, its ``last_seen_at`` refreshed by every run that still sees it), ``resolved`` when a
run no longer sees it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mlops_stack.monitoring_db.records import as_utc

JSONValue = JSON().with_variant(postgresql.JSONB(), "postgresql")
# Features are read whole and never queried inside: PostgreSQL json returns the stored text
# as is, jsonb re-serialises it (migration 0003).
FeaturesJSON = JSON()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back tz-aware UTC, also from SQLite (which stores text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class PredictionRow(Base):
    """One logged prediction row (mirrors migration 0001)."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("request_id", "row"),
        Index("ix_predictions_created_at", "created_at"),
    )

    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(64))
    row: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    features: Mapped[dict[str, Any]] = mapped_column(FeaturesJSON)
    prediction: Mapped[Any] = mapped_column(JSONValue, nullable=False)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSONValue, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)


class FeedbackRow(Base):
    """The true label of a prediction row, as last reported (mirrors migration 0001)."""

    __tablename__ = "feedback"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ShadowPredictionRow(Base):
    """What the challenger answered, in shadow, for a row the champion answered (migration 0005).

    The features are the champion's row in ``predictions`` (same ``request_id`` and ``row``);
    one row per version, so two challengers in turn never overwrite each other.
    """

    __tablename__ = "shadow_predictions"
    __table_args__ = (
        UniqueConstraint("request_id", "row", "model_version"),
        Index("ix_shadow_predictions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(64))
    row: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    prediction: Mapped[Any] = mapped_column(JSONValue, nullable=False)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSONValue, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)


PREDICTIONS: Table = PredictionRow.__table__  # type: ignore[assignment]  # a Table at runtime
FEEDBACK: Table = FeedbackRow.__table__  # type: ignore[assignment]
SHADOW_PREDICTIONS: Table = ShadowPredictionRow.__table__  # type: ignore[assignment]


ID = BigInteger().with_variant(Integer(), "sqlite")


class MonitorRunRow(Base):
    """One monitor run over a window of logged predictions (mirrors migrations 0002, 0004, 0005).

    ``metrics`` holds the run's quality on labelled rows by the names of
    :mod:`mlops_stack.names` for its ``task`` (accuracy, f1, roc_auc; or rmse, mae, r2,
    error_bias); a classifier's are also in the accuracy, f1 and roc_auc columns.
    """

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
    task: Mapped[str | None] = mapped_column(String(16), nullable=True)
    metrics: Mapped[dict[str, float | None] | None] = mapped_column(JSONValue, nullable=True)
    # migration 0005: a classifier's accuracy / F1 estimated from its probabilities on the
    # window (names.ACCURACY, names.F1 -> value), and the shadow challenger's comparison
    estimated: Mapped[dict[str, float | None] | None] = mapped_column(JSONValue, nullable=True)
    challenger: Mapped[dict[str, Any] | None] = mapped_column(JSONValue, nullable=True)


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
    # migration 0005: how far the column moved (Wasserstein in reference stds, or total
    # variation distance for categories); None for runs stored before it
    effect: Mapped[float | None] = mapped_column(Float, nullable=True)


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
