"""Predictions and feedback tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here on purpose: a migration must not change when the models do.
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("features", JSON_VALUE, nullable=False),
        sa.Column("prediction", JSON_VALUE, nullable=False),
        sa.Column("probabilities", JSON_VALUE, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.UniqueConstraint("request_id", "row", name="uq_predictions_request_id_row"),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "row", name="pk_feedback"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_index("ix_predictions_created_at", table_name="predictions")
    op.drop_table("predictions")
