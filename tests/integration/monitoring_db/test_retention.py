"""Retention on PostgreSQL: the same rules as on SQLite (tests/unit/monitoring_db/test_retention.py,
re-run here against a real server), and the advisory lock that lets one pass run at a time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mlops_stack.monitoring_db.upkeep import RETENTION_LOCK_KEY
from tests.support.monitoring import Monitoring
from tests.unit.monitoring_db.test_retention import (  # the same tests, with this module's store  # noqa: F401 (re-run on PostgreSQL)
    BATCH,
    CUTOFF,
    prediction,
    test_a_batch_as_large_as_the_rows_still_ends,
    test_rows_before_the_cutoff_go_in_batches_and_the_rest_stays,
)


@pytest.fixture
def store(postgres_url: str) -> Iterator[Monitoring]:
    """A migrated monitoring database on the test PostgreSQL."""
    with Monitoring(postgres_url) as db:
        db.migrate()
        yield db


def test_a_second_pass_skips_while_another_holds_the_lock(postgres_url: str):
    with Monitoring(postgres_url) as store:
        store.migrate()
        store.predictions.write_predictions([prediction("old", CUTOFF - timedelta(days=1))])
        with store.monitoring_db.engine.connect() as other:
            lock = sa.text("SELECT pg_try_advisory_lock(:key)")
            assert other.execute(lock, {"key": RETENTION_LOCK_KEY}).scalar_one()
            assert store.upkeep.delete_older_than(CUTOFF, batch_rows=BATCH) is None
            assert store.predictions.count_predictions() == 1
            unlock = sa.text("SELECT pg_advisory_unlock(:key)")
            other.execute(unlock, {"key": RETENTION_LOCK_KEY})
        deleted = store.upkeep.delete_older_than(CUTOFF, batch_rows=BATCH)
        assert deleted is not None and deleted.predictions == 1
        # the pass let its lock go: a third one takes it again
        assert store.upkeep.delete_older_than(CUTOFF, batch_rows=BATCH) is not None
