"""The prediction log's side of the monitoring database: logged rows and their labels.

:class:`PredictionStore` is what the log writers (the Redis stream's writer, the embedded sink)
and the predictor's ``/feedback`` use: write prediction rows, store true labels, tell which rows
are stored. Writes are idempotent by ``(request_id, row)``: every hop of the log path retries
after a failure, so a record may arrive twice and must still be stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError

from mlops_stack.monitoring_db.bulk_copy import (
    CREATE_STAGE,
    STAGE,
    STAGE_INSERT,
    copy_in,
    copy_text,
)
from mlops_stack.monitoring_db.engine import Database, chunks
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import FEEDBACK, PREDICTIONS, SHADOW_PREDICTIONS


class NotCanonical(ValueError):
    """A record's JSON is not as :meth:`PredictionRecord.to_json` writes it (see
    :meth:`PredictionStore.write_record_json`): parse it in Python instead."""


class PredictionStore:
    """Prediction rows, shadow rows and labels: the writes of the log path and ``/feedback``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def write_predictions(self, records: Sequence[PredictionRecord]) -> int:
        """Insert the records in one transaction; returns how many were new.

        A record whose ``(request_id, row)`` is already stored is skipped, so writing the same
        batch twice (a retry after an unacknowledged commit) stores each row once. Shadow
        records (the challenger's answers) go to ``shadow_predictions``, once per version.
        On PostgreSQL the records travel as their JSON through :meth:`write_record_json` (COPY:
        a third of the client CPU of a multi-row INSERT); on SQLite through :meth:`insert_records`.
        """
        if self.database.dialect != "postgresql" or not records:
            return self.insert_records(records)
        try:
            return self.write_record_json([record.to_json() for record in records])
        except NotCanonical:  # to_json writes the canonical form: only an odd value gets here
            return self.insert_records(records)

    def insert_records(self, records: Sequence[PredictionRecord]) -> int:
        """:meth:`write_predictions` through SQLAlchemy's multi-row INSERT, on either dialect.

        The reference path: SQLite always takes it, and PostgreSQL rows written by
        :meth:`write_record_json` must read back exactly as rows written here.
        """
        self.database.ensure_schema()
        served = [record.to_row() for record in records if not record.shadow]
        shadow = [record.to_row() for record in records if record.shadow]
        insert = self.database.insert
        new = 0
        with self.database.engine.begin() as connection:
            if served:
                statement = (
                    insert(PREDICTIONS)
                    .on_conflict_do_nothing(index_elements=["request_id", "row"])
                    .returning(PREDICTIONS.c.id)
                )
                new += len(connection.execute(statement, served).all())
            if shadow:  # the challenger's answers: once per (request_id, row, version)
                statement = (
                    insert(SHADOW_PREDICTIONS)
                    .on_conflict_do_nothing(index_elements=["request_id", "row", "model_version"])
                    .returning(SHADOW_PREDICTIONS.c.id)
                )
                new += len(connection.execute(statement, shadow).all())
        return new

    def write_record_json(self, payloads: Sequence[str | bytes]) -> int:
        """Store records given as their JSON (:meth:`PredictionRecord.to_json`); PostgreSQL only.

        The JSON text goes to PostgreSQL as it is (COPY into a temporary table, see
        :mod:`~mlops_stack.monitoring_db.bulk_copy`): idempotent like :meth:`insert_records`,
        and its rows read back the same (the features' JSON text is stored compact, as the
        stream carries it). One transaction; returns the new rows.

        Raises :class:`NotCanonical` when a payload is not a record as ``to_json`` writes it
        (checked in SQL: where Python's parsing would read it differently), and SQLAlchemy's
        ``DataError``/``IntegrityError`` when PostgreSQL refuses a value (not JSON, too long,
        a null). Nothing is written then: the caller takes the parsing path, which decides.
        """
        self.database.ensure_schema()
        if not payloads:
            return 0
        data = copy_text(payloads)
        with self.database.engine.begin() as connection:
            raw = connection.connection
            if not raw.info.get(STAGE):
                connection.exec_driver_sql(CREATE_STAGE)
                raw.info[STAGE] = True  # the temporary table lives as long as the connection
            try:
                copy_in(raw.dbapi_connection, data, connection.dialect.loaded_dbapi.Error)
                new, odd = connection.exec_driver_sql(STAGE_INSERT).one()
                if odd:
                    raise NotCanonical(f"{odd} of {len(payloads)} records are not canonical")
            except BaseException:
                raw.info.pop(STAGE, None)  # created in this transaction: rolled back with it
                raise
        return int(new)

    def record_feedback(self, items: Sequence[tuple[str, int, str]]) -> None:
        """Store true labels ``(request_id, row, label)``; a later label replaces an earlier one.

        Feedback may arrive before its prediction is written (the stream lags), so there is no
        foreign key: the window's join pairs them up when both exist.
        """
        self.database.ensure_schema()
        latest = {(str(rid), int(row)): str(label) for rid, row, label in items}
        if not latest:
            return
        now = datetime.now(UTC)
        rows = [
            {"request_id": rid, "row": row, "label": label, "received_at": now}
            for (rid, row), label in latest.items()
        ]
        insert = self.database.insert(FEEDBACK)
        statement = insert.on_conflict_do_update(
            index_elements=["request_id", "row"],
            set_={"label": insert.excluded.label, "received_at": insert.excluded.received_at},
        )
        with self.database.engine.begin() as connection:
            connection.execute(statement, rows)

    def known_predictions(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """The subset of ``keys`` that are stored predictions."""
        self.database.ensure_schema()
        wanted = {(str(rid), int(row)) for rid, row in keys}
        found: set[tuple[str, int]] = set()
        request_ids = sorted({rid for rid, _ in wanted})
        with self.database.engine.connect() as connection:
            for chunk in chunks(request_ids):
                query = select(PREDICTIONS.c.request_id, PREDICTIONS.c.row).where(
                    PREDICTIONS.c.request_id.in_(chunk)
                )
                found.update(key for key in connection.execute(query).tuples() if key in wanted)
        return found

    def count_predictions(self) -> int:
        """How many prediction rows are stored (all models, all time)."""
        self.database.ensure_schema()
        with self.database.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(PREDICTIONS)).scalar_one()


def write_isolating(
    store: PredictionStore, records: list[PredictionRecord]
) -> tuple[int, list[PredictionRecord]]:
    """Write a batch; if the database rejects its data, write row by row and return the rejects.

    One malformed record (a value too long or out of range for its column, a missing value) must
    not block the whole log path forever: it is set aside, the rest is written. Errors that are
    not about the data (connection lost, database down) propagate, for the caller to retry.
    """
    try:
        return store.write_predictions(records), []
    except (DataError, IntegrityError):
        if len(records) == 1:
            return 0, list(records)
    inserted, rejected = 0, []
    for record in records:
        try:
            inserted += store.write_predictions([record])
        except (DataError, IntegrityError):
            rejected.append(record)
    return inserted, rejected
