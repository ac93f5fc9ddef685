"""Monitor runs record the model's task and its quality metrics by name.

A regression model is judged on RMSE, MAE, R2 and error bias, not on accuracy, F1 and ROC AUC:
``metrics`` holds whichever metrics the run's task has (names of ``mlops_stack.names``), and
``task`` says which. The accuracy, f1 and roc_auc columns stay (and are still filled for a
classifier) for the readers that use them. Every run stored before this revision was of a
classifier: it gets that task, and its three figures copied into ``metrics``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen here on purpose: a migration must not change when the models do.
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")


def upgrade() -> None:
    op.add_column("monitor_runs", sa.Column("task", sa.String(16), nullable=True))
    op.add_column("monitor_runs", sa.Column("metrics", JSON_VALUE, nullable=True))
    _backfill()


def _backfill() -> None:
    """Runs stored before tasks existed: classification, their figures copied by name."""
    runs = sa.table(
        "monitor_runs",
        sa.column("id", sa.BigInteger()),
        sa.column("task", sa.String(16)),
        sa.column("metrics", JSON_VALUE),
        *(sa.column(name, sa.Float()) for name in CLASSIFICATION_METRICS),
    )
    bind = op.get_bind()
    op.execute(runs.update().values(task="classification"))
    measured = sa.or_(*(runs.c[name].is_not(None) for name in CLASSIFICATION_METRICS))
    query = sa.select(runs.c.id, *(runs.c[n] for n in CLASSIFICATION_METRICS)).where(measured)
    rows = bind.execute(query).all()
    if not rows:
        return
    update = (
        runs.update()
        .where(runs.c.id == sa.bindparam("run_id"))
        .values(metrics=sa.bindparam("run_metrics", type_=JSON_VALUE))
    )
    bind.execute(
        update,
        [
            {"run_id": row.id, "run_metrics": {n: row._mapping[n] for n in CLASSIFICATION_METRICS}}
            for row in rows
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("monitor_runs") as batch:
        batch.drop_column("metrics")
        batch.drop_column("task")
