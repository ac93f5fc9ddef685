"""Monitor runs, their per-feature drift, and alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen here on purpose: a migration must not change when the models do.
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "monitor_runs",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("window_start", WHEN, nullable=True),
        sa.Column("window_end", WHEN, nullable=True),
        sa.Column("window_rows", sa.Integer(), nullable=False),
        sa.Column("analysed_rows", sa.Integer(), nullable=False),
        sa.Column("sample_note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("drift_share", sa.Float(), nullable=True),
        sa.Column("prediction_drift_score", sa.Float(), nullable=True),
        sa.Column("prediction_drifted", sa.Boolean(), nullable=True),
        sa.Column("labelled_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("roc_auc", sa.Float(), nullable=True),
        sa.Column("baseline", JSON_VALUE, nullable=True),
        sa.Column("quality", JSON_VALUE, nullable=True),
        sa.Column("report_uri", sa.Text(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_runs"),
    )
    op.create_index("ix_monitor_runs_started_at", "monitor_runs", ["started_at"])
    op.create_table(
        "feature_drift",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("feature", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "feature", name="pk_feature_drift"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["monitor_runs.id"],
            name="fk_feature_drift_run_id_monitor_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", WHEN, nullable=False),
        sa.Column("last_seen_at", WHEN, nullable=False),
        sa.Column("resolved_at", WHEN, nullable=True),
        sa.Column("opened_by_run", ID, nullable=True),
        sa.Column("resolved_by_run", ID, nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])


def downgrade() -> None:
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("feature_drift")
    op.drop_index("ix_monitor_runs_started_at", table_name="monitor_runs")
    op.drop_table("monitor_runs")
