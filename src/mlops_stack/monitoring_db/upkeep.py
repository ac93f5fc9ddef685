"""Upkeep of the monitoring database: retention deletes and the locks that keep one worker doing
what must be done once.

:class:`Upkeep` is what the worker and the retention flow use. With several workers on one
database (``--scale worker=N``) some work must happen once however many start together (the
bootstrap's train run) or must not run twice at the same time (a retention pass): PostgreSQL
advisory locks decide. SQLite is one embedded process's file: there is nothing to take.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import Table

from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.engine import Database, chunks
from mlops_stack.monitoring_db.records import as_utc
from mlops_stack.monitoring_db.tables import (
    FEEDBACK,
    PREDICTIONS,
    SHADOW_PREDICTIONS,
    AlertRow,
    FeatureDriftRow,
    MonitorRunRow,
)
from mlops_stack.names import AlertState

log = get_logger(__name__)

# Key of the PostgreSQL advisory lock one retention pass holds: a second worker skips.
RETENTION_LOCK_KEY = int.from_bytes(b"retentio", "big")
# Key of the PostgreSQL advisory lock a starting worker holds while it creates what must exist
# once however many workers start together (the bootstrap's train run, the zombie automation).
BOOTSTRAP_LOCK_KEY = int.from_bytes(b"bootstra", "big")
LOCK_POLL_SECONDS = 0.5  # between two tries of a held lock, so that a stop is noticed


@dataclass(frozen=True)
class Deleted:
    """What one retention pass deleted, by table, and in how many transactions."""

    predictions: int = 0
    shadow_predictions: int = 0
    feedback: int = 0
    monitor_runs: int = 0
    feature_drift: int = 0
    alerts: int = 0
    transactions: int = 0

    def counts(self) -> dict[str, int]:
        """The counts by table name (and ``transactions``), for a log line or a run result."""
        return asdict(self)


class Upkeep:
    """Retention deletes and the workers' advisory locks."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def delete_older_than(self, cutoff: datetime, batch_rows: int) -> Deleted | None:
        """Delete what is older than ``cutoff``, at most ``batch_rows`` rows per transaction;
        None when another pass holds the retention lock (PostgreSQL): two workers never both
        delete, the second one skips.

        Why in batches: one DELETE of a month of rows would hold its locks (on SQLite the file's
        write lock) for as long as it runs; short transactions let the log writer's inserts in
        between. What goes, strictly before ``cutoff`` (a row at ``cutoff`` stays):

        - predictions by ``created_at``, with their label and shadow answers (same
          ``request_id`` and ``row``) whatever those rows' own times, so nothing refers to a
          prediction that is gone;
        - shadow answers by ``created_at`` and labels by ``received_at`` that have no
          prediction (it never came, or went in an earlier pass); a kept prediction keeps its
          label;
        - monitor runs by ``started_at`` with their per-feature drift (deleted explicitly:
          SQLite does not enforce the foreign key's cascade), and alerts resolved before
          ``cutoff`` (an open alert stays, however old).
        """
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        self.database.ensure_schema()
        cutoff = as_utc(cutoff)
        steps = (
            _delete_predictions,
            _delete_shadow_orphans,
            _delete_feedback_orphans,
            _delete_runs,
            _delete_resolved_alerts,
        )
        deleted: Counter[str] = Counter()
        with self.database.engine.connect() as connection:
            if not self._try_lock(connection, RETENTION_LOCK_KEY):
                log.info("retention.skipped", reason="another retention pass holds the lock")
                return None
            try:
                for step in steps:
                    while True:  # one short transaction per batch, until a batch comes up short
                        with connection.begin():
                            own, counts = step(connection, cutoff, batch_rows)
                        deleted.update(counts)
                        deleted["transactions"] += 1
                        if own < batch_rows:
                            break
            finally:
                self._release_lock(connection, RETENTION_LOCK_KEY)
        return Deleted(**deleted)

    @contextmanager
    def bootstrap_lock(self, stop: threading.Event) -> Iterator[bool]:
        """Hold :data:`BOOTSTRAP_LOCK_KEY` for the block: one starting worker at a time.

        Yields True once the lock is held, False if ``stop`` was set while another worker
        held it (the caller then does nothing). Waiting is a try every
        :data:`LOCK_POLL_SECONDS` rather than a blocking ``pg_advisory_lock``, so that a
        worker told to stop while it waits stops. On SQLite (embedded: one worker) there
        is no lock to take. A failure to reach the database raises: the caller retries.
        """
        with self.database.engine.connect() as connection:
            while not self._try_lock(connection, BOOTSTRAP_LOCK_KEY):
                if stop.wait(LOCK_POLL_SECONDS):
                    yield False
                    return
            try:
                yield True
            finally:
                self._release_lock(connection, BOOTSTRAP_LOCK_KEY)

    def _try_lock(self, connection: Connection, key: int) -> bool:
        """Take the advisory lock ``key`` for this connection's session (PostgreSQL); False if
        another session holds it.

        A session lock outlives the commits of the work it guards and is released with the
        connection if the process dies. SQLite is one process's embedded file: nothing to take.
        """
        if self.database.dialect != "postgresql":
            return True
        query = text("SELECT pg_try_advisory_lock(:key)")
        taken = bool(connection.execute(query, {"key": key}).scalar_one())
        connection.commit()
        return taken

    def _release_lock(self, connection: Connection, key: int) -> None:
        """Release what :meth:`_try_lock` took; a connection that cannot say so is discarded,
        never returned to the pool still holding the lock (its session ends, and the lock)."""
        if self.database.dialect != "postgresql":
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
        except DBAPIError:
            connection.invalidate()


def _delete_keys(connection: Connection, table: Table, keys: Sequence[tuple[Any, ...]]) -> int:
    """Delete the rows of ``table`` whose ``(request_id, row)`` is one of ``keys``; how many.

    In chunks of :data:`IN_CHUNK` keys: SQLite caps the bound parameters of one statement.
    """
    columns = tuple_(table.c.request_id, table.c.row)
    return sum(
        connection.execute(delete(table).where(columns.in_(list(chunk)))).rowcount
        for chunk in chunks(keys)
    )


def _delete_predictions(
    connection: Connection, cutoff: datetime, rows: int
) -> tuple[int, dict[str, int]]:
    """The oldest ``rows`` predictions before ``cutoff`` with their labels and shadow answers."""
    oldest = select(PREDICTIONS.c.id).where(PREDICTIONS.c.created_at < cutoff).limit(rows)
    statement = (
        delete(PREDICTIONS)
        .where(PREDICTIONS.c.id.in_(oldest))
        .returning(PREDICTIONS.c.request_id, PREDICTIONS.c.row)
    )
    keys = [tuple(key) for key in connection.execute(statement)]
    counts = {
        "predictions": len(keys),
        "feedback": _delete_keys(connection, FEEDBACK, keys),
        "shadow_predictions": _delete_keys(connection, SHADOW_PREDICTIONS, keys),
    }
    return len(keys), counts


def _delete_shadow_orphans(
    connection: Connection, cutoff: datetime, rows: int
) -> tuple[int, dict[str, int]]:
    """Shadow answers created before ``cutoff`` (their prediction went, or never came)."""
    table = SHADOW_PREDICTIONS
    oldest = select(table.c.id).where(table.c.created_at < cutoff).limit(rows)
    count = connection.execute(delete(table).where(table.c.id.in_(oldest))).rowcount
    return count, {"shadow_predictions": count}


def _delete_feedback_orphans(
    connection: Connection, cutoff: datetime, rows: int
) -> tuple[int, dict[str, int]]:
    """Labels received before ``cutoff`` for rows with no prediction stored."""
    predicted = (
        select(PREDICTIONS.c.id)
        .where(
            PREDICTIONS.c.request_id == FEEDBACK.c.request_id, PREDICTIONS.c.row == FEEDBACK.c.row
        )
        .exists()
    )
    oldest = (
        select(FEEDBACK.c.request_id, FEEDBACK.c.row)
        .where(FEEDBACK.c.received_at < cutoff, ~predicted)
        .limit(rows)
    )
    key = tuple_(FEEDBACK.c.request_id, FEEDBACK.c.row)
    count = connection.execute(delete(FEEDBACK).where(key.in_(oldest))).rowcount
    return count, {"feedback": count}


def _delete_runs(connection: Connection, cutoff: datetime, rows: int) -> tuple[int, dict[str, int]]:
    """The oldest ``rows`` monitor runs started before ``cutoff``, with their feature drift."""
    query = select(MonitorRunRow.id).where(MonitorRunRow.started_at < cutoff).limit(rows)
    ids = list(connection.execute(query).scalars())
    counts = {"monitor_runs": 0, "feature_drift": 0}
    for chunk in chunks(ids):
        drift = delete(FeatureDriftRow).where(FeatureDriftRow.run_id.in_(chunk))
        counts["feature_drift"] += connection.execute(drift).rowcount
        runs = delete(MonitorRunRow).where(MonitorRunRow.id.in_(chunk))
        counts["monitor_runs"] += connection.execute(runs).rowcount
    return len(ids), counts


def _delete_resolved_alerts(
    connection: Connection, cutoff: datetime, rows: int
) -> tuple[int, dict[str, int]]:
    """Alerts resolved before ``cutoff``; open ones stay whatever their age."""
    oldest = (
        select(AlertRow.id)
        .where(AlertRow.state == AlertState.RESOLVED, AlertRow.resolved_at < cutoff)
        .limit(rows)
    )
    count = connection.execute(delete(AlertRow).where(AlertRow.id.in_(oldest))).rowcount
    return count, {"alerts": count}
