"""Prediction features as PostgreSQL ``json`` (text kept as written), not ``jsonb``.

Features are written once and read whole, a million rows at a time by the monitor; ``jsonb``
re-serialises every value on the way out, which made reading the features the largest cost
of a monitor run on PostgreSQL (benchmarks/monitor.py, docs/performance.md). Nothing queries
inside them. SQLite stores both as text: nothing to do there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE predictions ALTER COLUMN features TYPE json USING features::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE predictions ALTER COLUMN features TYPE jsonb USING features::jsonb")
