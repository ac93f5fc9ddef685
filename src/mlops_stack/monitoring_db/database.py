"""The monitoring database: prediction and feedback tables, and the store that reads them.

One class, :class:`MonitoringDB`, owns the SQL. It speaks SQLite (embedded: the predictor writes the
file itself) and PostgreSQL (the compose stack). Writes are idempotent by ``(request_id, row)``:
every hop of the log path retries after a failure, so a record may arrive twice and must still be
stored once. The schema is created only by the Alembic migrations shipped in ``migrations/``;
the models below mirror them for queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Text,
    UniqueConstraint,
    and_,
    cast,
    create_engine,
    event,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mlops_stack.logs import get_logger
from mlops_stack.prediction_log.records import PredictionRecord, as_utc

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Not Alembic's default name: the monitoring database may be shared with MLflow, which has its own.
VERSION_TABLE = "logstore_alembic_version"
# Key of the PostgreSQL advisory lock that serialises migrations across processes.
MIGRATION_LOCK_KEY = int.from_bytes(b"logstore", "big")
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


PREDICTIONS = PredictionRow.__table__
FEEDBACK = FeedbackRow.__table__


def alembic_config(connection: Any = None) -> Config:
    """Alembic configuration built in code, so migrations run from an installed package too."""
    config = Config()
    # ConfigParser interpolates '%': a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["connection"] = connection
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (monitoring, tests) read while the predictor's writer thread writes;
    the busy timeout makes a second writer wait instead of failing with 'database is locked'."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
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


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def feature_column(name: str) -> str:
    """Where the frames of :class:`MonitoringDB` put a feature (prefixed if it clashes)."""
    return f"feature.{name}" if name in FRAME_COLUMNS else name


@dataclass(frozen=True)
class WindowExtent:
    """How many rows a window holds and the time span they cover (None when empty)."""

    rows: int
    start: datetime | None
    end: datetime | None


class MonitoringDB:
    """The monitoring database (SQLite or PostgreSQL URL); safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(self.url)
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def __repr__(self) -> str:
        return f"MonitoringDB({self.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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
        batch twice (a retry after an unacknowledged commit) stores each row once.
        """
        rows = [record.to_row() for record in records]
        if not rows:
            return 0
        statement = (
            self._insert(PREDICTIONS)
            .on_conflict_do_nothing(index_elements=["request_id", "row"])
            .returning(PREDICTIONS.c.id)
        )
        with self.engine.begin() as connection:
            return len(connection.execute(statement, rows).all())

    def record_feedback(self, items: Sequence[tuple[str, int, str]]) -> None:
        """Store true labels ``(request_id, row, label)``; a later label replaces an earlier one.

        Feedback may arrive before its prediction is written (the stream lags), so there is no
        foreign key: the join in :meth:`predictions_with_feedback` pairs them up when both exist.
        """
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

    def ping(self) -> None:
        """Raise (``sqlalchemy.exc.OperationalError``) unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or before a forked process uses the store)."""
        self.engine.dispose()


def _stream_columns(names: Sequence[str]) -> list[Any]:
    """What :meth:`MonitoringDB.window_chunks` selects: ``names`` of :data:`FRAME_COLUMNS`, features.

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
    expanded.columns = [feature_column(str(name)) for name in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


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
