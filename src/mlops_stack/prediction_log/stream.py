"""The Redis stream between the predictor and the database, and the writer that drains it.

The predictor's :class:`~mlops_stack.prediction_log.sinks.RedisStreamSink` XADDs each record's JSON
(field ``record``) to ``MLOPS_PREDICTION_STREAM``. :class:`StreamWriter` (``mlops log-writer``)
reads it through the consumer group ``MLOPS_STREAM_GROUP`` and acknowledges an entry only after
the database committed it. An entry read but not acknowledged (database down, writer killed)
stays in the group's pending list: the writer re-reads its own pending entries first, and any
writer claims entries another left idle for ``claim_idle_ms``. Delivery is therefore at least
once, and the store's idempotent insert makes it exactly once in the table.

Into PostgreSQL the entries' JSON goes as it is, COPYed in one transaction per batch
(:meth:`~mlops_stack.monitoring_db.PredictionStore.write_record_json`); a batch holding an entry
that is no record, or a value the database refuses, is parsed in Python instead, which
dead-letters just those entries and writes the rest.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT
from sqlalchemy.exc import DataError, IntegrityError

from mlops_stack.backoff import Backoff
from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db import (
    Database,
    NotCanonical,
    PredictionStore,
    write_isolating,
)
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.settings import Settings

log = get_logger(__name__)

RECORD_FIELD = "record"
DEAD_LETTER_SUFFIX = ":dead"  # entries that are not records, or that the database rejects
CLAIM_IDLE_MS = 30_000
CLAIM_SWEEP_SECONDS = 5.0  # pause between two full XAUTOCLAIM sweeps of the pending list
MIN_BACKOFF, MAX_BACKOFF = 0.1, 5.0

Entry = tuple[bytes, dict[bytes, bytes]]


def redis_client(url: str, socket_timeout: float = 5.0) -> redis.Redis:
    """A client that fails fast: retrying with backoff is the caller's job, not redis-py's.

    One immediate retry remains, for a pooled connection that a Redis restart broke.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=15,
    )


def default_consumer() -> str:
    """A consumer name unique to this process, and recognisable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamWriter:
    """Moves prediction records from the Redis stream into the log store."""

    def __init__(
        self,
        settings: Settings,
        store: PredictionStore | None = None,
        consumer: str | None = None,
        *,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("the stream writer needs MLOPS_REDIS_URL")
        self.stream = settings.prediction_stream
        self.group = settings.stream_group
        self.consumer = consumer or default_consumer()
        self.batch_size = settings.prediction_log_batch_rows
        self.wait_seconds = settings.prediction_log_writer_wait_ms / 1000
        self._stopping = threading.Event()  # run_forever's stop: ends a wait for entries early
        self.claim_idle_ms = claim_idle_ms
        self.store = store or PredictionStore(Database(settings.resolved_monitoring_db_url))
        self._owns_store = store is None
        # XREADGROUP blocks up to block_ms: the socket must wait longer than that.
        self.redis = redis_client(settings.redis_url, socket_timeout=35.0)
        self.failing = False  # the last write to the database failed
        self._group_ready = False
        self._own_pending = True  # re-read our own unacknowledged entries before new ones
        self._claim_cursor: bytes | str = "0-0"
        self._next_sweep = 0.0

    # --- one step ----------------------------------------------------------------------------
    def run_once(self, block_ms: int = 1000) -> int:
        """Write one batch from the stream; returns the rows handled (0: none, or DB down).

        Redis errors propagate (the caller backs off); a database error is logged and leaves the
        batch pending, to be retried by the next call.
        """
        self._ensure_group()
        entries = self._own_pending_entries() or self._claimed_entries()
        if not entries:
            entries = self._read(">", block_ms=max(1, min(block_ms, 30_000)))
            if 0 < len(entries) < self.batch_size and self.wait_seconds > 0:
                # Rows trickle in one request at a time: written as they come, each would cost
                # a commit (and the writer about 1 ms of CPU). Let more gather first.
                self._stopping.wait(self.wait_seconds)
                entries += self._read(">", count=self.batch_size - len(entries))
        return self._write(entries) if entries else 0

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # id 0: entries XADDed before the group existed are written too.
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("log_writer.group_created", stream=self.stream, group=self.group)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(
        self, last_id: str, block_ms: int | None = None, count: int | None = None
    ) -> list[Entry]:
        try:
            response = self.redis.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: last_id},
                count=count or self.batch_size,
                block=block_ms,
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted: recreate the group next time
                self._group_ready = False
                return []
            raise
        # RESP2 (what redis_client speaks): [[stream, [(id, {field: value}), ...]]], or empty
        streams = cast("list[tuple[bytes, list[Entry]]] | None", response)
        return list(streams[0][1]) if streams else []

    def _own_pending_entries(self) -> list[Entry]:
        """This consumer's entries read earlier but never acknowledged (start-up, DB failure)."""
        if not self._own_pending:
            return []
        entries = self._read("0")
        if not entries:
            self._own_pending = False
        return entries

    def _claimed_entries(self) -> list[Entry]:
        """Entries another consumer read and left idle (it died): take them over."""
        if time.monotonic() < self._next_sweep:
            return []
        cursor, entries, *_deleted = self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.batch_size,
        )
        self._claim_cursor = cursor
        if cursor in (b"0-0", "0-0"):  # swept the whole pending list: rest a while
            self._next_sweep = time.monotonic() + CLAIM_SWEEP_SECONDS
        if entries:
            log.info("log_writer.claimed", entries=len(entries), stream=self.stream)
        return list(entries)

    def _write(self, entries: list[Entry]) -> int:
        """Store a batch, acknowledge it once committed; the rows handled (0: database down)."""
        if self.store.database.dialect == "postgresql":
            written = self._write_json(entries)
            if written is not None:
                return written
        return self._write_parsed(entries)

    def _write_json(self, entries: list[Entry]) -> int | None:
        """PostgreSQL's path: the entries' JSON goes to the database as it is (COPY).

        Parsing each record in Python cost the writer about as much CPU as the predictor spent
        answering it. None when an entry needs the parsing path to decide its fate (not a
        record, a value the database refuses): the batch was rolled back, nothing is lost.
        """
        field = RECORD_FIELD.encode()
        payloads: list[bytes] = []
        for _entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing left to write
                continue
            payload = fields.get(field)
            if payload is None:  # not a record: dead-lettered by the parsing path
                return None
            payloads.append(payload)
        try:
            inserted = self.store.write_record_json(payloads)
        except (NotCanonical, DataError, IntegrityError):
            return None
        except Exception as exc:  # any database failure: leave the batch pending, retry later
            self._database_failed(exc, len(entries))
            return 0
        self._acknowledge([entry_id for entry_id, _ in entries], [])
        self._database_answered()
        log.debug("log_writer.batch", rows=len(payloads), inserted=inserted, dead=0)
        return len(payloads)

    def _write_parsed(self, entries: list[Entry]) -> int:
        """Parse every record, then write them, setting aside what is no record or refused."""
        records: list[PredictionRecord] = []
        # by the record object: a row's champion and shadow records share (request_id, row)
        entry_of: dict[int, bytes] = {}
        dead: list[Entry] = []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing left to write
                continue
            try:
                record = PredictionRecord.from_json(fields[RECORD_FIELD.encode()])
            except (KeyError, ValueError):
                dead.append((entry_id, fields))
                continue
            records.append(record)
            entry_of[id(record)] = entry_id
        try:  # the database migrates itself before its first write
            inserted, rejected = write_isolating(self.store, records)
        except Exception as exc:  # any database failure: leave the batch pending, retry later
            self._database_failed(exc, len(entries))
            return 0
        dead += [(entry_of[id(r)], {RECORD_FIELD.encode(): r.to_json().encode()}) for r in rejected]
        self._acknowledge([entry_id for entry_id, _ in entries], dead)
        self._database_answered()
        log.debug("log_writer.batch", rows=len(records), inserted=inserted, dead=len(dead))
        return len(records)

    def _database_failed(self, exc: Exception, pending: int) -> None:
        self._own_pending = True
        if not self.failing:
            log.warning("log_writer.database_failed", error=str(exc), pending=pending)
        self.failing = True

    def _database_answered(self) -> None:
        if self.failing:
            log.info("log_writer.database_recovered")
            self.failing = False

    def _acknowledge(self, ids: list[bytes], dead: list[Entry]) -> None:
        """Ack and delete the written entries (the stream is a queue, not an archive)."""
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, fields in dead:
            letter: dict[FieldT, EncodableT] = {key: value for key, value in fields.items()}
            letter[b"source_id"] = entry_id
            pipe.xadd(self.stream + DEAD_LETTER_SUFFIX, letter)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        if dead:
            log.error(
                "log_writer.dead_letters",
                entries=len(dead),
                stream=self.stream + DEAD_LETTER_SUFFIX,
            )

    # --- the loop ----------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Write batches until ``stop`` is set, backing off (0.1 s to 5 s) while anything fails."""
        log.info("log_writer.started", stream=self.stream, group=self.group, consumer=self.consumer)
        self._stopping = stop
        backoff = Backoff.exponential(MIN_BACKOFF, MAX_BACKOFF)
        while not stop.is_set():
            try:
                self.run_once(block_ms=1000)
                failed = self.failing
            except Exception as exc:  # Redis down (or anything unforeseen): wait and retry
                log.warning("log_writer.redis_failed", error=str(exc), retry_in=backoff.upcoming)
                failed = True
            if failed:
                backoff.wait(stop)
            else:
                backoff.reset()
        log.info("log_writer.stopped", consumer=self.consumer)

    def close(self) -> None:
        self.redis.close()
        if self._owns_store:
            self.store.database.dispose()
