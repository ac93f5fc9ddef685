"""The monitoring database's connection: engine, schema migrations and health.

:class:`Database` is what a process holds (one per process, built by the composition root): the
SQLAlchemy engine and its pool, the one-time migration to the latest Alembic revision, and a
ping for health checks. The queries live with the consumer that owns them, each a small class
over a ``Database``: the prediction log's writes (``predictions``), the monitor's window,
results and shadow pairs (``monitor``), the dashboard's reads (``dashboard``) and upkeep
(``upkeep``). It speaks SQLite (embedded: the predictor writes the file itself) and PostgreSQL
(the compose stack).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url

from mlops_stack.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Not Alembic's default name: the monitoring database may be shared with MLflow, which has its own.
VERSION_TABLE = "logstore_alembic_version"
# Key of the PostgreSQL advisory lock that serialises migrations across processes.
MIGRATION_LOCK_KEY = int.from_bytes(b"logstore", "big")
SQLITE_BUSY_SECONDS = 30.0
IN_CHUNK = 500  # keys per IN (...) query: SQLite caps the bound parameters of one statement


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


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``: for IN (...) lists under SQLite's parameter cap."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Database:
    """The monitoring database (SQLite or PostgreSQL URL); safe to share between threads.

    Build one per process (the composition root does) and close it with :meth:`dispose`, or use
    it as a context manager. The schema is migrated before the first query that needs it: every
    store calls :meth:`ensure_schema` first, so no caller has to remember to.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(self.url)
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Database:
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

    @property
    def insert(self) -> Any:
        """The dialect's INSERT construct (``ON CONFLICT`` is dialect-specific in SQLAlchemy)."""
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

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

    def ping(self) -> None:
        """Raise (``sqlalchemy.exc.OperationalError``) unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or before a forked process uses the store)."""
        self.engine.dispose()
