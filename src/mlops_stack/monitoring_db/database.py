"""The monitoring database and its one owner, :class:`MonitoringDB`.

Every query against the monitoring tables is a method here: the prediction log's writes, the
monitor's window, the results and alerts, the dashboard's reads. It speaks SQLite (embedded: the
predictor writes the file itself) and PostgreSQL (the compose stack), and brings its schema to
the latest Alembic revision itself before the first query, so no caller has to remember to.
Writes of predictions are idempotent by ``(request_id, row)``: every hop of the log path retries
after a failure, so a record may arrive twice and must still be stored once.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import orjson
import pandas as pd
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Table

from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.tables import (
    FEEDBACK,
    PREDICTIONS,
    SHADOW_PREDICTIONS,
    AlertRow,
    FeatureDriftRow,
    MonitorRunRow,
)
from mlops_stack.names import AlertChangeKind, AlertState
from mlops_stack.prediction_log.records import PredictionRecord, as_utc

log = get_logger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Not Alembic's default name: the monitoring database may be shared with MLflow, which has its own.
VERSION_TABLE = "logstore_alembic_version"
# Key of the PostgreSQL advisory lock that serialises migrations across processes.
MIGRATION_LOCK_KEY = int.from_bytes(b"logstore", "big")
# Key of the PostgreSQL advisory lock one retention pass holds: a second worker skips.
RETENTION_LOCK_KEY = int.from_bytes(b"retentio", "big")
# Key of the PostgreSQL advisory lock a starting worker holds while it creates what must exist
# once however many workers start together (the bootstrap's train run, the zombie automation).
BOOTSTRAP_LOCK_KEY = int.from_bytes(b"bootstra", "big")
LOCK_POLL_SECONDS = 0.5  # between two tries of a held lock, so that a stop is noticed
# Columns of predictions_with_feedback() before the expanded features.
FRAME_COLUMNS = (
    "request_id",
    "row",
    "created_at",
    "model_name",
    "model_version",
    "prediction",
    "probabilities",
    "latency_ms",
    "label",
    "received_at",
)
_IN_CHUNK = 500  # request ids per IN (...) query
# Rows per chunk of a streamed window: about 20 MB of JSON text and its parsed frame at a time.
CHUNK_ROWS = 20_000


def alembic_config(connection: Any = None) -> Config:
    """Alembic configuration built in code, so migrations run from an installed package too."""
    config = Config()
    # ConfigParser interpolates '%': a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["connection"] = connection
    return config


SQLITE_BUSY_SECONDS = 30.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (monitoring, tests) read while the predictor's writer thread writes;
    the busy timeout makes a second writer wait instead of failing with 'database is locked'.

    Switching a file to WAL needs an exclusive lock, and SQLite does not always wait for it
    through the busy timeout: a connection opened while another one migrates the file (a long
    write transaction) can fail at once with 'database is locked'. WAL is a property of the
    file, set once for every connection, so the switch is skipped when the file is in WAL
    already and otherwise retried for as long as a writer would wait."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        while True:
            try:
                if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # another connection holds the file: retry the switch
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        # pre_ping: pooled connections do not survive a database restart; a short connect
        # timeout makes an outage fail fast so that callers back off and retry.
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    raise ValueError(f"unsupported monitoring database {backend!r}: use sqlite or postgresql")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _feature_column(name: str) -> str:
    """Where a window frame puts a feature: prefixed when its name clashes with a row column.

    Private: callers take features through :meth:`MonitoringDB.features`, which undoes it.
    """
    return f"feature.{name}" if name in FRAME_COLUMNS else name


@dataclass(frozen=True)
class WindowExtent:
    """How many rows a window holds and the time span they cover (None when empty)."""

    rows: int
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class Answers:
    """One version's answers on the compared rows: predictions (JSON values: classes or
    numbers) and, for a classifier, one float column of probability per class (else None)."""

    predictions: pd.Series
    probabilities: pd.DataFrame | None


@dataclass(frozen=True)
class ShadowPairs:
    """The champion's and the challenger's answers on the same labelled rows, row for row.

    ``shadow_rows`` counts every window row the challenger answered, labelled or not.
    """

    shadow_rows: int
    labels: pd.Series
    champion: Answers
    challenger: Answers

    @property
    def labelled_rows(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Scope:
    """The filters the dashboard's reads honour: one model, since when, which version."""

    model_name: str
    since: datetime | None = None
    version: str | None = None


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


@dataclass(frozen=True)
class AlertChange:
    """What a monitor run did to an alert: ``opened``, ``resolved`` or ``ongoing``."""

    change: AlertChangeKind
    alert_id: int
    condition: str
    reason: str


RUN_COLUMNS = (
    "id", "started_at", "model_version", "status", "reason", "window_start", "window_end",
    "window_rows", "analysed_rows", "drift_share", "labelled_rows", "accuracy", "f1", "roc_auc",
    "baseline", "sample_note", "report_uri", "mlflow_run_id",
)  # fmt: skip
ALERT_COLUMNS = ("id", "condition", "reason", "opened_at", "last_seen_at")
ALERT_HISTORY_COLUMNS = (
    "id", "condition", "state", "reason", "opened_at", "last_seen_at", "resolved_at",
    "opened_by_run", "resolved_by_run",
)  # fmt: skip
DRIFT_COLUMNS = ("feature", "kind", "method", "threshold", "score", "drifted", "effect")
# Results of a run newer than RUN_COLUMNS (the task, the quality figures by metric name, the
# estimated accuracy / F1 of migration 0005): read when the table has them, None for runs stored
# before (see monitor_run_results_frame).
RESULT_COLUMNS = ("id", "task", "metrics", "estimated")
LATENCY_ROWS = 100_000  # latency percentiles over at most the newest this many rows


class MonitoringDB:
    """The monitoring database (SQLite or PostgreSQL URL); safe to share between threads.

    Build one per process (the composition root does) and close it with :meth:`dispose`, or use
    it as a context manager. The schema is migrated before the first query that needs it.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(self.url)
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MonitoringDB({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> MonitoringDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        """Migrate once per instance; every query calls it first, a process's start may too.

        A failure (database down) is not remembered: the next call tries again, so a process
        that starts before its database needs no start-up order.
        """
        if self._migrated:
            return
        with self._migrate_lock:
            if not self._migrated:
                self.migrate()  # sets _migrated

    def migrate(self) -> None:
        """Bring the schema to the latest revision; a no-op when it is there already.

        Two processes starting together (the predictor and the log writer) may both call this:
        on PostgreSQL a transaction-scoped advisory lock makes the second wait for the first and
        then find nothing to do; on SQLite ``BEGIN IMMEDIATE`` does the same with the file lock.
        DDL is transactional on both, so a failed migration leaves the schema as it was.
        """
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            command.upgrade(alembic_config(connection), "head")
        self._migrated = True
        log.debug("monitoring_db.migrated", database=repr(self))

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        with self.engine.connect() as connection:
            if not self.engine.dialect.has_table(connection, VERSION_TABLE):
                return None
            query = text(f"SELECT version_num FROM {VERSION_TABLE}")
            return connection.execute(query).scalar_one_or_none()

    def write_predictions(self, records: Sequence[PredictionRecord]) -> int:
        """Insert the records in one transaction; returns how many were new.

        A record whose ``(request_id, row)`` is already stored is skipped, so writing the same
        batch twice (a retry after an unacknowledged commit) stores each row once. Shadow
        records (the challenger's answers) go to ``shadow_predictions``, once per version.
        On PostgreSQL the records travel as their JSON through :meth:`write_record_json` (COPY:
        a third of the client CPU of a multi-row INSERT); on SQLite through :meth:`insert_records`.
        """
        if self.dialect != "postgresql" or not records:
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
        self.ensure_schema()
        served = [record.to_row() for record in records if not record.shadow]
        shadow = [record.to_row() for record in records if record.shadow]
        new = 0
        with self.engine.begin() as connection:
            if served:
                statement = (
                    self._insert(PREDICTIONS)
                    .on_conflict_do_nothing(index_elements=["request_id", "row"])
                    .returning(PREDICTIONS.c.id)
                )
                new += len(connection.execute(statement, served).all())
            if shadow:  # the challenger's answers: once per (request_id, row, version)
                statement = (
                    self._insert(SHADOW_PREDICTIONS)
                    .on_conflict_do_nothing(index_elements=["request_id", "row", "model_version"])
                    .returning(SHADOW_PREDICTIONS.c.id)
                )
                new += len(connection.execute(statement, shadow).all())
        return new

    def write_record_json(self, payloads: Sequence[str | bytes]) -> int:
        """Store records given as their JSON (:meth:`PredictionRecord.to_json`); PostgreSQL only.

        Why: parsing each record in Python and binding its values costs the log writer about as
        much CPU as the predictor spends answering. Here the JSON text goes to PostgreSQL as it
        is (COPY into a temporary table), and one ``INSERT ... SELECT ... ON CONFLICT DO
        NOTHING`` per table takes the fields apart with ``json_to_record``: idempotent like
        :meth:`insert_records`, and its rows read back the same (the features' JSON text is
        stored compact, as the stream carries it). One transaction; returns the new rows.

        Raises :class:`NotCanonical` when a payload is not a record as ``to_json`` writes it
        (checked in SQL: where Python's parsing would read it differently), and SQLAlchemy's
        ``DataError``/``IntegrityError`` when PostgreSQL refuses a value (not JSON, too long,
        a null). Nothing is written then: the caller takes the parsing path, which decides.
        """
        self.ensure_schema()
        if not payloads:
            return 0
        data = _copy_text(payloads)
        with self.engine.begin() as connection:
            raw = connection.connection
            if not raw.info.get(_STAGE):
                connection.exec_driver_sql(_CREATE_STAGE)
                raw.info[_STAGE] = True  # the temporary table lives as long as the connection
            try:
                _copy_in(raw.dbapi_connection, data, connection.dialect.loaded_dbapi.Error)
                new, odd = connection.exec_driver_sql(_STAGE_INSERT).one()
                if odd:
                    raise NotCanonical(f"{odd} of {len(payloads)} records are not canonical")
            except BaseException:
                raw.info.pop(_STAGE, None)  # created in this transaction: rolled back with it
                raise
        return int(new)

    def record_feedback(self, items: Sequence[tuple[str, int, str]]) -> None:
        """Store true labels ``(request_id, row, label)``; a later label replaces an earlier one.

        Feedback may arrive before its prediction is written (the stream lags), so there is no
        foreign key: the join in :meth:`predictions_with_feedback` pairs them up when both exist.
        """
        self.ensure_schema()
        latest = {(str(rid), int(row)): str(label) for rid, row, label in items}
        if not latest:
            return
        now = datetime.now(UTC)
        rows = [
            {"request_id": rid, "row": row, "label": label, "received_at": now}
            for (rid, row), label in latest.items()
        ]
        insert = self._insert(FEEDBACK)
        statement = insert.on_conflict_do_update(
            index_elements=["request_id", "row"],
            set_={"label": insert.excluded.label, "received_at": insert.excluded.received_at},
        )
        with self.engine.begin() as connection:
            connection.execute(statement, rows)

    def known_predictions(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """The subset of ``keys`` that are stored predictions."""
        self.ensure_schema()
        wanted = {(str(rid), int(row)) for rid, row in keys}
        found: set[tuple[str, int]] = set()
        request_ids = sorted({rid for rid, _ in wanted})
        with self.engine.connect() as connection:
            for chunk in _chunks(request_ids, _IN_CHUNK):
                query = select(PREDICTIONS.c.request_id, PREDICTIONS.c.row).where(
                    PREDICTIONS.c.request_id.in_(chunk)
                )
                found.update(key for key in connection.execute(query).tuples() if key in wanted)
        return found

    def count_predictions(self) -> int:
        self.ensure_schema()
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(PREDICTIONS)).scalar_one()

    def predictions_with_feedback(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
        labelled_only: bool = False,
    ) -> pd.DataFrame:
        """Predictions with their label where one was reported, oldest first.

        ``since`` keeps rows created at or after it; ``model_name`` the rows of one model;
        ``labelled_only`` the rows that have a label; ``limit`` keeps the most recent ``limit``
        of those (the window a monitor looks at). The filters run in SQL, before the limit, so
        a window is N rows of that model, not N rows of the table filtered afterwards.
        Columns: :data:`FRAME_COLUMNS`, times as UTC timestamps (``received_at`` NaT without
        feedback), then one column per feature name;
        a feature whose name is one of those columns is renamed ``feature.<name>``.
        Everything is in memory at once: a large window is read with :meth:`window_chunks`.
        """
        chunks = list(
            self.window_chunks(since, limit, model_name=model_name, labelled_only=labelled_only)
        )
        if not chunks:
            return _chunk_frame([], 0, FRAME_COLUMNS)
        frame = pd.concat(chunks) if len(chunks) > 1 else chunks[0]
        if limit is not None:  # streamed newest first
            frame = frame.iloc[::-1]
        return frame.reset_index(drop=True)

    def window_chunks(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
        labelled_only: bool = False,
        chunk_rows: int = CHUNK_ROWS,
        columns: Sequence[str] = FRAME_COLUMNS,
    ) -> Iterator[pd.DataFrame]:
        """The rows of :meth:`predictions_with_feedback`, streamed in frames of ``chunk_rows``.

        Why: a monitor window may hold a million rows, whose JSON features expanded into Python
        objects at once would take gigabytes. Here one chunk is in memory at a time: PostgreSQL
        streams through a server-side cursor, SQLite steps through the file. JSON columns come as
        text and are parsed with orjson. Same columns as :meth:`predictions_with_feedback`, or
        only ``columns`` of :data:`FRAME_COLUMNS` (then the features): every column left out
        saves a million Python objects on a million rows. The order is the query's, newest first
        when ``limit`` is given, else oldest first, and each frame's index continues the previous
        one's (a row's position in the stream). The window is one statement, so a consistent
        snapshot even while the predictor keeps writing.
        """
        self.ensure_schema()
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        unknown = [name for name in columns if name not in FRAME_COLUMNS]
        if unknown:
            raise ValueError(f"not columns of the window: {', '.join(unknown)}")
        names = [name for name in FRAME_COLUMNS if name in columns]
        query = self._window_query(since, limit, model_name, labelled_only, _stream_columns(names))
        with self.engine.connect() as connection:
            streaming = connection.execution_options(stream_results=True, yield_per=chunk_rows)
            position = 0
            for rows in streaming.execute(query).partitions():
                yield _chunk_frame(rows, position, names)
                position += len(rows)

    def window_extent(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
    ) -> WindowExtent:
        """Size and time span of the window :meth:`window_chunks` would stream, without its rows.

        Why: a monitor run with nothing to check (no champion) still records what it saw,
        and counting in SQL is much cheaper than reading the rows.
        """
        self.ensure_schema()
        window = self._window_query(
            since, limit, model_name, False, [PREDICTIONS.c.created_at]
        ).subquery()
        query = select(func.count(), func.min(window.c.created_at), func.max(window.c.created_at))
        with self.engine.connect() as connection:
            rows, start, end = connection.execute(query).one()
        return WindowExtent(rows, start, end)

    @staticmethod
    def _window_query(
        since: datetime | None,
        limit: int | None,
        model_name: str | None,
        labelled_only: bool,
        columns: Sequence[Any],
    ) -> Select[Any]:
        """The window's SELECT: filters in SQL before the limit, newest first with a limit."""
        query = select(*columns).select_from(
            PREDICTIONS.outerjoin(
                FEEDBACK,
                and_(
                    FEEDBACK.c.request_id == PREDICTIONS.c.request_id,
                    FEEDBACK.c.row == PREDICTIONS.c.row,
                ),
            )
        )
        if since is not None:
            query = query.where(PREDICTIONS.c.created_at >= as_utc(since))
        if model_name is not None:
            query = query.where(PREDICTIONS.c.model_name == model_name)
        if labelled_only:
            query = query.where(FEEDBACK.c.label.is_not(None))
        if limit is not None:
            query = query.order_by(PREDICTIONS.c.created_at.desc(), PREDICTIONS.c.id.desc())
            return query.limit(limit)
        return query.order_by(PREDICTIONS.c.created_at, PREDICTIONS.c.id)

    def shadow_pairs(
        self,
        since: datetime | None,
        limit: int | None,
        *,
        model_name: str,
        challenger_version: str,
        champion_version: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> ShadowPairs:
        """The labelled rows of the monitor's window that ``challenger_version`` also answered.

        Why one join: the champion and the challenger must be scored on exactly the same rows,
        or a difference in their figures may only be a difference in their rows. The window is
        :meth:`window_chunks`'s (the newest ``limit`` rows of the model, or those since
        ``since``), so the comparison covers the rows the monitor judged; its shadow answers
        are found through the unique ``(request_id, row, model_version)`` index. Streamed in
        chunks of ``chunk_rows`` and kept compact (probabilities as float columns), like the
        window's own labelled rows. ``champion_version`` keeps the window rows that version
        served: a window spanning a change of champion holds an older version's answers too,
        and those are no answers of the champion in question.
        """
        self.ensure_schema()
        window = self._window_query(
            since,
            limit,
            model_name,
            False,
            [
                PREDICTIONS.c.request_id,
                PREDICTIONS.c.row,
                PREDICTIONS.c.model_version,
                cast(PREDICTIONS.c.prediction, Text).label("champion_prediction"),
                cast(PREDICTIONS.c.probabilities, Text).label("champion_probabilities"),
                FEEDBACK.c.label,
            ],
        ).subquery()
        joined = window.join(
            SHADOW_PREDICTIONS,
            and_(
                SHADOW_PREDICTIONS.c.request_id == window.c.request_id,
                SHADOW_PREDICTIONS.c.row == window.c.row,
                SHADOW_PREDICTIONS.c.model_version == str(challenger_version),
            ),
        )
        served = (
            [window.c.model_version == str(champion_version)]
            if champion_version is not None
            else []
        )
        counted = select(func.count()).select_from(joined).where(*served)
        query = (
            select(
                window.c.label,
                window.c.champion_prediction,
                window.c.champion_probabilities,
                cast(SHADOW_PREDICTIONS.c.prediction, Text).label("challenger_prediction"),
                cast(SHADOW_PREDICTIONS.c.probabilities, Text).label("challenger_probabilities"),
            )
            .select_from(joined)
            .where(window.c.label.is_not(None), *served)
        )
        parts: list[pd.DataFrame] = []
        with self.engine.connect() as connection:
            answered = connection.execute(counted).scalar_one()
            streaming = connection.execution_options(stream_results=True, yield_per=chunk_rows)
            for rows in streaming.execute(query).partitions():
                parts.append(_pairs_frame(rows))
        frame = pd.concat(parts, ignore_index=True) if parts else _pairs_frame([])
        return ShadowPairs(
            shadow_rows=int(answered),
            labels=frame["label"],
            champion=_answers(frame, "champion"),
            challenger=_answers(frame, "challenger"),
        )

    def shadow_rows(self, model_name: str, version: str) -> int:
        """How many rows ``version`` of the model answered in shadow, all time (the dashboard)."""
        self.ensure_schema()
        query = select(func.count()).where(
            SHADOW_PREDICTIONS.c.model_name == model_name,
            SHADOW_PREDICTIONS.c.model_version == str(version),
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def latest_comparison(self, model_name: str) -> tuple[MonitorRunRow, dict[str, Any]] | None:
        """The newest monitor run of the model that stored a champion-challenger comparison,
        and that comparison; None when no run has one yet."""
        self.ensure_schema()
        query = (
            select(MonitorRunRow)
            .where(MonitorRunRow.model_name == model_name, MonitorRunRow.challenger.is_not(None))
            .order_by(MonitorRunRow.id.desc())
            .limit(20)  # a JSON null (not SQL NULL) passes IS NOT NULL: skip those few
        )
        with Session(self.engine, expire_on_commit=False) as session:
            for run in session.scalars(query):
                if isinstance(run.challenger, dict):
                    return run, dict(run.challenger)
        return None

    @staticmethod
    def features(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
        """The named features of a window frame, named as given (absent ones all missing).

        A feature may share its name with a row column (a feature called ``label``); the frame
        keeps both apart internally, and this is the one way to read features back.
        """
        columns = [_feature_column(name) for name in names]
        return frame.reindex(columns=columns).set_axis(list(names), axis=1)

    # --- monitor results ------------------------------------------------------------------
    def save_run(self, run: MonitorRunRow, features: Sequence[FeatureDriftRow]) -> int:
        """Store a run and its per-feature drift in one transaction; returns the run id."""
        self.ensure_schema()
        with Session(self.engine) as session, session.begin():
            session.add(run)
            session.flush()
            for feature in features:
                feature.run_id = run.id
                session.add(feature)
            return run.id

    def runs(self, model_name: str | None = None, limit: int = 100) -> list[MonitorRunRow]:
        """The most recent runs, newest first."""
        self.ensure_schema()
        query = select(MonitorRunRow).order_by(MonitorRunRow.id.desc()).limit(limit)
        if model_name:
            query = query.where(MonitorRunRow.model_name == model_name)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def feature_drift(self, run_id: int) -> list[FeatureDriftRow]:
        """One run's per-feature drift, drifted features first."""
        self.ensure_schema()
        query = select(FeatureDriftRow).where(FeatureDriftRow.run_id == run_id)
        with Session(self.engine, expire_on_commit=False) as session:
            return sorted(session.scalars(query), key=lambda f: (not f.drifted, f.feature))

    def alerts(
        self, state: AlertState | None = None, model_name: str | None = None
    ) -> list[AlertRow]:
        """Alerts, oldest first, optionally of one state and one model."""
        self.ensure_schema()
        query = select(AlertRow).order_by(AlertRow.id)
        if state:
            query = query.where(AlertRow.state == state)
        if model_name:
            query = query.where(AlertRow.model_name == model_name)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def update_alerts(
        self, model_name: str, seen: dict[str, str], run_id: int
    ) -> list[AlertChange]:
        """Open, refresh or resolve alerts for the conditions this run saw.

        ``seen`` maps each condition present now (e.g. ``drift``) to its reason. A condition
        that already has an open alert does not open another: it is one alert until it clears.
        """
        self.ensure_schema()
        now = datetime.now(UTC)
        changes: list[AlertChange] = []
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            query = (
                select(AlertRow)
                .where(AlertRow.model_name == model_name, AlertRow.state == AlertState.OPEN)
                .with_for_update()
            )
            open_alerts = {a.condition: a for a in session.scalars(query)}
            for condition, alert in open_alerts.items():
                if condition in seen:
                    alert.last_seen_at, alert.reason = now, seen[condition]
                    changes.append(
                        AlertChange(AlertChangeKind.ONGOING, alert.id, condition, alert.reason)
                    )
                else:
                    alert.state, alert.resolved_at = AlertState.RESOLVED, now
                    alert.resolved_by_run, alert.notified = run_id, False
                    changes.append(
                        AlertChange(AlertChangeKind.RESOLVED, alert.id, condition, alert.reason)
                    )
            for condition, reason in seen.items():
                if condition not in open_alerts:
                    alert = AlertRow(
                        model_name=model_name,
                        condition=condition,
                        state=AlertState.OPEN,
                        reason=reason,
                        opened_at=now,
                        last_seen_at=now,
                        opened_by_run=run_id,
                        notified=False,
                    )
                    session.add(alert)
                    session.flush()
                    changes.append(AlertChange(AlertChangeKind.OPENED, alert.id, condition, reason))
        return changes

    def mark_notified(self, alert_id: int) -> None:
        """Remember that the webhook took an alert's latest change."""
        self.ensure_schema()
        with Session(self.engine) as session, session.begin():
            alert = session.get(AlertRow, alert_id)
            if alert is not None:
                alert.notified = True

    # --- retention ---------------------------------------------------------------------------
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
        self.ensure_schema()
        cutoff = as_utc(cutoff)
        steps = (
            _delete_predictions,
            _delete_shadow_orphans,
            _delete_feedback_orphans,
            _delete_runs,
            _delete_resolved_alerts,
        )
        deleted: Counter[str] = Counter()
        with self.engine.connect() as connection:
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
        with self.engine.connect() as connection:
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
        if self.dialect != "postgresql":
            return True
        query = text("SELECT pg_try_advisory_lock(:key)")
        taken = bool(connection.execute(query, {"key": key}).scalar_one())
        connection.commit()
        return taken

    def _release_lock(self, connection: Connection, key: int) -> None:
        """Release what :meth:`_try_lock` took; a connection that cannot say so is discarded,
        never returned to the pool still holding the lock (its session ends, and the lock)."""
        if self.dialect != "postgresql":
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
        except DBAPIError:
            connection.invalidate()

    # --- the dashboard's reads, each filtered by a Scope -------------------------------------
    def monitor_runs_frame(self, scope: Scope, limit: int = 500) -> pd.DataFrame:
        """Monitor runs in scope, oldest first (one chart point each): :data:`RUN_COLUMNS`."""
        runs = self._runs_in_scope(scope, limit)
        frame = pd.DataFrame([{c: getattr(run, c) for c in RUN_COLUMNS} for run in runs])
        frame = frame.reindex(columns=list(RUN_COLUMNS))
        return frame.sort_values("started_at").reset_index(drop=True)

    def feature_drift_frame(self, run_id: int) -> pd.DataFrame:
        """One run's per-feature drift as a frame: :data:`DRIFT_COLUMNS` (``effect`` None for runs
        stored before migration 0005)."""
        rows = self.feature_drift(run_id)
        records = [{c: getattr(r, c) for c in DRIFT_COLUMNS} for r in rows]
        return pd.DataFrame(records, columns=list(DRIFT_COLUMNS))

    def open_alerts_frame(self, model_name: str) -> pd.DataFrame:
        """Alerts of one model whose condition still holds: :data:`ALERT_COLUMNS`."""
        alerts = self.alerts(state=AlertState.OPEN, model_name=model_name)
        frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_COLUMNS} for a in alerts])
        return frame.reindex(columns=list(ALERT_COLUMNS))

    def alert_history_frame(self, scope: Scope) -> pd.DataFrame:
        """Every alert of the model still seen since ``scope.since``, newest first, with how
        long it was open (to its resolution, or until now for an open one)."""
        self.ensure_schema()
        query = select(AlertRow).where(AlertRow.model_name == scope.model_name)
        if scope.since is not None:
            query = query.where(AlertRow.last_seen_at >= scope.since)
        with Session(self.engine, expire_on_commit=False) as session:
            alerts = list(session.scalars(query.order_by(AlertRow.id.desc())))
        frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_HISTORY_COLUMNS} for a in alerts])
        frame = frame.reindex(columns=list(ALERT_HISTORY_COLUMNS))
        end = frame["resolved_at"].fillna(pd.Timestamp(datetime.now(UTC)))
        opened = pd.to_datetime(frame["opened_at"], utc=True)
        frame["open_for"] = pd.to_datetime(end, utc=True) - opened
        return frame

    def traffic(self, scope: Scope, now: datetime | None = None) -> dict[str, int]:
        """Logged prediction rows: last hour, last day, in the window, all time (one scan)."""
        self.ensure_schema()
        now = now or datetime.now(UTC)
        created = PREDICTIONS.c.created_at
        query = select(
            func.count().filter(created >= now - timedelta(hours=1)).label("last_hour"),
            func.count().filter(created >= now - timedelta(days=1)).label("last_day"),
            func.count().filter(created >= (scope.since or datetime.min)).label("window"),
            func.count().label("total"),
        ).where(*_prediction_filters(scope, with_since=False))
        with self.engine.connect() as connection:
            return {k: int(v) for k, v in connection.execute(query).mappings().one().items()}

    def latency(self, scope: Scope) -> dict[str, float] | None:
        """p50/p95 of the logged model latency in scope (newest LATENCY_ROWS); None if none."""
        self.ensure_schema()
        query = (
            select(PREDICTIONS.c.latency_ms)
            .where(*_prediction_filters(scope))
            .order_by(PREDICTIONS.c.created_at.desc())
            .limit(LATENCY_ROWS)
        )
        with self.engine.connect() as connection:
            values = np.array(connection.execute(query).scalars().all(), dtype=float)
        if not values.size:
            return None
        p50, p95 = np.percentile(values, [50, 95])
        return {"p50_ms": float(p50), "p95_ms": float(p95), "rows": int(values.size)}

    def labelled_frame(self, scope: Scope) -> pd.DataFrame:
        """Predictions in scope with a true label: created_at, model_version, prediction, label."""
        frame = self.predictions_with_feedback(
            scope.since, model_name=scope.model_name, labelled_only=True
        )
        if scope.version is not None:
            frame = frame[frame["model_version"] == scope.version]
        columns = ["created_at", "model_version", "prediction", "label"]
        return frame[columns].astype({"prediction": str, "label": str})

    def monitor_run_results_frame(self, scope: Scope, limit: int = 500) -> pd.DataFrame:
        """Per monitor run in scope: its model's task and its quality figures by metric name.

        Columns :data:`RESULT_COLUMNS` (``metrics`` a dict such as ``{"rmse": ..., "mae": ...}``;
        ``estimated`` a classifier's ``{"accuracy": ..., "f1": ..., "rows": ...}``, see
        ``monitoring.estimate.stored_estimate``).
        Kept apart from :meth:`monitor_runs_frame` and read by attribute so that a database
        whose runs predate these columns (or a model class without them) reads as None.
        """
        runs = self._runs_in_scope(scope, limit)
        frame = pd.DataFrame([{c: getattr(run, c, None) for c in RESULT_COLUMNS} for run in runs])
        return frame.reindex(columns=list(RESULT_COLUMNS))

    def _runs_in_scope(self, scope: Scope, limit: int) -> list[MonitorRunRow]:
        """The newest ``limit`` monitor runs of the scope's model (and window, and version)."""
        self.ensure_schema()
        query = select(MonitorRunRow).where(MonitorRunRow.model_name == scope.model_name)
        if scope.since is not None:
            query = query.where(MonitorRunRow.started_at >= scope.since)
        if scope.version is not None:
            query = query.where(MonitorRunRow.model_version == scope.version)
        query = query.order_by(MonitorRunRow.id.desc()).limit(limit)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def run_data_quality(self, run_id: int) -> list[dict[str, Any]]:
        """One run's per-feature data quality as the monitor stored it (``quality`` JSON):
        missing share, out-of-range count, unseen categories and examples; empty when none."""
        self.ensure_schema()
        query = select(MonitorRunRow.quality).where(MonitorRunRow.id == run_id)
        with Session(self.engine) as session:
            stored = session.scalar(query)
        return [dict(item) for item in stored or [] if isinstance(item, dict)]

    def feature_values(
        self,
        model_name: str,
        start: datetime | None,
        end: datetime | None,
        feature: str,
        limit: int,
    ) -> pd.Series:
        """One feature's logged values in [start, end] (the newest ``limit`` rows from start)."""
        empty = pd.Series(dtype=object, name=feature)
        if start is None:
            return empty
        chunks = list(
            self.window_chunks(start, limit, model_name=model_name, columns=("created_at",))
        )
        frame = pd.concat(chunks) if chunks else pd.DataFrame()
        if frame.empty:
            return empty
        if end is not None:
            frame = frame[frame["created_at"] <= pd.Timestamp(end)]
        values = self.features(frame, [feature])[feature]
        return empty if values.isna().all() else values.rename(feature)

    def ping(self) -> None:
        """Raise (``sqlalchemy.exc.OperationalError``) unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or before a forked process uses the store)."""
        self.engine.dispose()


def _prediction_filters(scope: Scope, with_since: bool = True) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [PREDICTIONS.c.model_name == scope.model_name]
    if with_since and scope.since is not None:
        filters.append(PREDICTIONS.c.created_at >= scope.since)
    if scope.version is not None:
        filters.append(PREDICTIONS.c.model_version == scope.version)
    return filters


def _delete_keys(connection: Connection, table: Table, keys: Sequence[tuple[Any, ...]]) -> int:
    """Delete the rows of ``table`` whose ``(request_id, row)`` is one of ``keys``; how many.

    In chunks of :data:`_IN_CHUNK` keys: SQLite caps the bound parameters of one statement.
    """
    columns = tuple_(table.c.request_id, table.c.row)
    return sum(
        connection.execute(delete(table).where(columns.in_(list(chunk)))).rowcount
        for chunk in _chunks(keys, _IN_CHUNK)
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
    for chunk in _chunks(ids, _IN_CHUNK):
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


def _stream_columns(names: Sequence[str]) -> list[Any]:
    """What :meth:`MonitoringDB.window_chunks` selects: ``names`` of FRAME_COLUMNS, features.

    JSON columns are selected as text: parsing it with orjson is several times faster than the
    drivers' own JSON decoding. Times skip :class:`UTCDateTime`'s per-row conversion (SQLite's
    text, PostgreSQL's datetimes as the driver gives them): pandas converts a whole column at
    once, about a tenth of the cost on a million rows.
    """
    columns: list[Any] = []
    for name in names:
        table = FEEDBACK if name in ("label", "received_at") else PREDICTIONS
        if name in ("prediction", "probabilities"):
            columns.append(cast(table.c[name], Text).label(name))
        elif name in ("created_at", "received_at"):
            columns.append(type_coerce(table.c[name], String).label(name))
        else:
            columns.append(table.c[name])
    columns.append(cast(PREDICTIONS.c.features, Text).label("features"))
    return columns


def _json(value: str | None) -> Any:
    """Parse JSON text with orjson; the standard library for what orjson refuses (huge ints)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def _chunk_frame(rows: Sequence[Any], start: int, names: Sequence[str]) -> pd.DataFrame:
    """Rows of :func:`_stream_columns` as a frame indexed from ``start``, features expanded."""
    index = pd.RangeIndex(start, start + len(rows))
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(names) + 1)
    values: dict[str, Any] = dict(zip((*names, "features"), columns, strict=True))
    features = [_json(text) or {} for text in values.pop("features")]
    for name in ("prediction", "probabilities"):
        if name in values:
            values[name] = [_json(text) for text in values[name]]
    frame = pd.DataFrame(values, index=index)
    for name in ("created_at", "received_at"):
        if name in values:  # SQLite's text is UTC without an offset; utc=True reads it so
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    # from_records is the fastest way from dicts; given ``index=`` it reads it as field names
    expanded = pd.DataFrame.from_records(features).set_axis(index)
    expanded.columns = [_feature_column(str(name)) for name in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


PAIR_COLUMNS = (
    "label",
    "champion_prediction",
    "champion_probabilities",
    "challenger_prediction",
    "challenger_probabilities",
)


def _pairs_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Rows of :meth:`MonitoringDB.shadow_pairs` as label, predictions and probability columns
    ``<side>:p:<class>`` (floats: a dict per row would cost ten times the memory)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(PAIR_COLUMNS)
    values = dict(zip(PAIR_COLUMNS, columns, strict=True))
    frame = pd.DataFrame(
        {
            "label": pd.Series(values["label"], dtype=object),
            "champion": pd.Series([_json(v) for v in values["champion_prediction"]], dtype=object),
            "challenger": pd.Series(
                [_json(v) for v in values["challenger_prediction"]], dtype=object
            ),
        }
    )
    for side in ("champion", "challenger"):
        parsed = [_json(v) or {} for v in values[f"{side}_probabilities"]]
        if any(parsed):
            probabilities = pd.DataFrame.from_records(parsed).astype(float)
            probabilities.columns = [f"{side}:p:{c}" for c in probabilities.columns]
            frame = pd.concat([frame, probabilities.set_axis(frame.index)], axis=1)
    return frame


def _answers(frame: pd.DataFrame, side: str) -> Answers:
    """One side's predictions and probability columns (named by class) of a pairs frame."""
    prefix = f"{side}:p:"
    columns = [c for c in frame.columns if str(c).startswith(prefix)]
    probabilities = None
    if columns:
        probabilities = frame[columns].set_axis([c.removeprefix(prefix) for c in columns], axis=1)
    return Answers(frame[side], probabilities)


class NotCanonical(ValueError):
    """A record's JSON is not as :meth:`PredictionRecord.to_json` writes it (see
    :meth:`MonitoringDB.write_record_json`): parse it in Python instead."""


# --- the prediction log's COPY path (MonitoringDB.write_record_json) -------------------------
_STAGE = "prediction_log_stage"
# Per connection, emptied at every commit: a temporary table is no schema, so no migration.
_CREATE_STAGE = f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (record json) ON COMMIT DELETE ROWS"
# What PredictionRecord.to_json writes for created_at (isoformat of a UTC time), and a bit more;
# without an offset the time is UTC (as_utc), whatever the session's time zone says.
_ISO_TIME = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?([+-]\d\d:\d\d)?$"
_SERVED_COLUMNS = (
    'request_id, "row", created_at, model_name, model_version, features, prediction, '
    "probabilities, latency_ms"
)
_SHADOW_COLUMNS = _SERVED_COLUMNS.replace(" features,", "")
# ``canonical``: the record reads the same here as through PredictionRecord.from_json + to_row
# (text fields are JSON strings, the time is ISO, the features an object, the flag a boolean,
# the latency finite or null, the prediction present); a batch with any other record is rolled
# back and parsed in Python. A JSON null becomes SQL NULL in json_to_record: prediction and
# probabilities take JSON null back, as SQLAlchemy's JSON type stores None.
_STAGE_INSERT = rf"""
WITH staged AS (
    SELECT j.request_id #>> '{{}}' AS request_id, j."row",
        CASE WHEN j.created_at ~ '[+-]\d\d:\d\d$' THEN j.created_at::timestamptz
            ELSE j.created_at::timestamp AT TIME ZONE 'UTC' END AS created_at,
        j.model_name #>> '{{}}' AS model_name, j.model_version #>> '{{}}' AS model_version,
        j.features, coalesce(j.prediction, 'null'::jsonb) AS prediction,
        coalesce(j.probabilities, 'null'::jsonb) AS probabilities, j.latency_ms,
        coalesce(j.shadow::text = 'true', false) AS shadow,
        coalesce(json_typeof(j.request_id) = 'string' AND json_typeof(j.model_name) = 'string'
            AND json_typeof(j.model_version) = 'string'
            AND j.created_at ~ '{_ISO_TIME}' AND json_typeof(j.features) = 'object'
            AND coalesce(json_typeof(j.shadow) = 'boolean', true)
            AND coalesce(j.latency_ms NOT IN ('NaN', 'Infinity', '-Infinity'), true)
            AND (j.prediction IS NOT NULL OR s.record -> 'prediction' IS NOT NULL), false)
            AS canonical
    FROM {_STAGE} AS s,
        json_to_record(s.record) AS j(request_id json, "row" integer, created_at text,
            model_name json, model_version json, features json, prediction jsonb,
            probabilities jsonb, latency_ms double precision, shadow json)
), served AS (
    INSERT INTO predictions ({_SERVED_COLUMNS})
    SELECT {_SERVED_COLUMNS} FROM staged WHERE canonical AND NOT shadow
    ON CONFLICT (request_id, "row") DO NOTHING RETURNING 1
), shadowed AS (
    INSERT INTO shadow_predictions ({_SHADOW_COLUMNS})
    SELECT {_SHADOW_COLUMNS} FROM staged WHERE canonical AND shadow
    ON CONFLICT (request_id, "row", model_version) DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM served) + (SELECT count(*) FROM shadowed),
    (SELECT count(*) FROM staged WHERE NOT canonical)
"""
# COPY's text format: backslash escapes, one line per record (JSON text has no raw tab or
# newline unless written with indentation; escaped, they stay JSON whitespace).
_COPY_ESCAPES = ((b"\\", b"\\\\"), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t"))


def _copy_text(payloads: Sequence[str | bytes]) -> bytes:
    """The payloads as COPY text-format input: one escaped line each."""
    lines = []
    for payload in payloads:
        line = payload.encode() if isinstance(payload, str) else payload
        for char, escaped in _COPY_ESCAPES:
            if char in line:
                line = line.replace(char, escaped)
        lines.append(line)
    lines.append(b"")
    return b"\n".join(lines)


def _copy_in(dbapi_connection: Any, data: bytes, dbapi_error: type[Exception]) -> None:
    """COPY ``data`` into the stage on the transaction's own (psycopg2) connection.

    psycopg2's errors are raised as SQLAlchemy's (DataError for a payload that is not JSON or
    not UTF-8), as if the statement had gone through SQLAlchemy.
    """
    statement = f"COPY {_STAGE} (record) FROM STDIN"
    with dbapi_connection.cursor() as cursor:
        try:
            cursor.copy_expert(statement, io.BytesIO(data))
        except dbapi_error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc


def write_isolating(
    store: MonitoringDB, records: list[PredictionRecord]
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
