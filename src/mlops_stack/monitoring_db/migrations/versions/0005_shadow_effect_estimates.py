"""Shadow predictions of the challenger, drift effect sizes, estimated and challenger quality.

- ``shadow_predictions``: what the ``challenger`` version answered for a row the champion
  answered (scored off the request path). Keyed by ``(request_id, row, model_version)`` so that a
  row is stored once per version; the features are the champion's row (``predictions``), not
  repeated here. The monitor joins it with ``feedback`` to compare both models on the same rows.
- ``feature_drift.effect``: how far a column moved, next to its test's p-value: the Wasserstein
  distance in reference standard deviations (numbers) or the total variation distance
  (categories). A column drifts only when its test is significant *and* it moved this far.
- ``monitor_runs.estimated``: a classifier's accuracy and F1 estimated from its own probabilities
  on the window's unlabelled rows (confidence-based performance estimation), by metric name.
- ``monitor_runs.challenger``: the challenger's quality next to the champion's on the same
  labelled live rows, when a challenger scores in shadow.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen here on purpose: a migration must not change when the models do.
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shadow_predictions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("prediction", JSON_VALUE, nullable=False),
        sa.Column("probabilities", JSON_VALUE, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_predictions"),
        sa.UniqueConstraint(
            "request_id",
            "row",
            "model_version",
            name="uq_shadow_predictions_request_id_row_model_version",
        ),
    )
    op.create_index("ix_shadow_predictions_created_at", "shadow_predictions", ["created_at"])
    with op.batch_alter_table("feature_drift") as batch:
        batch.add_column(sa.Column("effect", sa.Float(), nullable=True))
    with op.batch_alter_table("monitor_runs") as batch:
        batch.add_column(sa.Column("estimated", JSON_VALUE, nullable=True))
        batch.add_column(sa.Column("challenger", JSON_VALUE, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitor_runs") as batch:
        batch.drop_column("challenger")
        batch.drop_column("estimated")
    with op.batch_alter_table("feature_drift") as batch:
        batch.drop_column("effect")
    op.drop_index("ix_shadow_predictions_created_at", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
