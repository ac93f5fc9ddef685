"""In-process sinks: how the predictor hands prediction records to the log path.

A request thread calls :meth:`PredictionSink.submit`, which only appends to memory (or, when
memory is full, to a spool file) and returns: logging never slows down or fails a prediction.
A background thread drains the queue in batches to the destination, the Redis stream or the
database. While the destination is down the thread keeps the records, retries with a capped
backoff and reports itself degraded; records beyond ``MLOPS_LOG_BUFFER_ROWS`` go to spool files
under ``<data_dir>/spool``, replayed once the destination is back, also after a restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol, runtime_checkable

from mlops_stack.backoff import Backoff
from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.database import MonitoringDB, write_isolating
from mlops_stack.prediction_log.records import PredictionRecord
from mlops_stack.prediction_log.spool import Spool
from mlops_stack.prediction_log.stream import RECORD_FIELD, redis_client
from mlops_stack.settings import Settings

log = get_logger(__name__)

MIN_BACKOFF, MAX_BACKOFF = 0.1, 5.0
PROBE_SECONDS = 5.0  # an idle sink checks its destination this often, so status() stays true


@runtime_checkable
class PredictionSink(Protocol):
    """What the predictor hands records to."""

    def start(self) -> None: ...

    def submit(self, record: PredictionRecord) -> None:
        """Take a record; never blocks the caller, never raises, never drops it."""

    def depth(self) -> int:
        """Records not yet durably handed on (memory and spool)."""

    def status(self) -> tuple[bool, str]:
        """Whether the log path works, and a reason a person can read."""

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed in ``timeout``; the rest stays in the spool for next start."""


class QueueSink:
    """The queue, spool, batching and retry shared by the sinks; subclasses only deliver."""

    kind = "queue"

    def __init__(
        self,
        settings: Settings,
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.batch_size = settings.log_batch_size
        self.flush_seconds = settings.log_flush_seconds
        self.capacity = settings.log_buffer_rows
        self.spool = Spool(Path(settings.data_dir) / "spool")
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self._queue: deque[PredictionRecord] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._closed = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._error: str | None = None  # why the last delivery failed; None while it works
        self._last_contact = 0.0

    # --- what the predictor calls ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        waiting = self.spool.recover()
        if waiting:
            log.info("log_sink.spool_found", sink=self.kind, rows=waiting)
        self._stopping.clear()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"log-sink-{self.kind}", daemon=True)
        self._thread.start()
        log.info("log_sink.started", sink=self.kind, destination=self.destination())

    def submit(self, record: PredictionRecord) -> None:
        try:
            with self._cond:
                if len(self._queue) < self.capacity and not self._closed:
                    self._queue.append(record)
                    if len(self._queue) in (1, self.batch_size):
                        self._cond.notify()
                    return
            self._spill([record])
        except Exception as exc:  # a prediction must never fail because of its log
            log.error("log_sink.submit_failed", sink=self.kind, error=str(exc))

    def depth(self) -> int:
        with self._cond:
            in_memory = len(self._queue) + self._in_flight
        return in_memory + self.spool.rows()

    def status(self) -> tuple[bool, str]:
        if self._thread is None or not self._thread.is_alive():
            return False, f"{self.kind} log sink is not running"
        if self._error is not None:
            return False, (
                f"degraded: {self.kind} unreachable ({self._error}); "
                f"{self.depth()} records kept for retry"
            )
        return True, f"ok: logging to {self.destination()}, {self.depth()} records queued"

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("log_sink.stop_timeout", sink=self.kind, timeout=timeout)
        with self._cond:
            self._closed = True
            rest = list(self._queue)
            self._queue.clear()
        if rest:
            self._spill(rest)
            log.warning("log_sink.spooled_at_stop", sink=self.kind, rows=len(rest))
        self.spool.close()
        self._release()
        log.info("log_sink.stopped", sink=self.kind)

    # --- what a subclass provides ------------------------------------------------------------
    def destination(self) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Called before each cycle until it succeeds once (e.g. create the tables)."""

    def _deliver(self, records: list[PredictionRecord]) -> None:
        """Hand the records on durably, or raise."""
        raise NotImplementedError

    def _probe(self) -> None:
        """Raise if the destination is unreachable (checked while idle)."""

    def _release(self) -> None:
        """Close connections at stop."""

    # --- the background thread ---------------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff.exponential(self.min_backoff, self.max_backoff)
        while not self._stopping.is_set():
            try:
                self._cycle()
            except Exception as exc:  # the destination is down: keep everything, retry later
                self._failed(exc, backoff.upcoming)
                backoff.wait(self._stopping)
            else:
                backoff.reset()
        self._flush_for_stop()

    def _cycle(self) -> None:
        """Deliver one spool batch (the oldest records), then one memory batch."""
        self._prepare()
        lines = self.spool.peek(self.batch_size)
        if lines:
            records = self._parse(lines)
            if records:
                self._deliver(records)
            self.spool.consume(len(lines))
            self._succeeded()
        batch = self._take_batch(wait=not lines)
        if batch:
            self._deliver_taken(batch)
        elif not lines and time.monotonic() - self._last_contact > PROBE_SECONDS:
            self._probe()
            self._succeeded()

    def _take_batch(self, wait: bool) -> list[PredictionRecord]:
        """Up to a batch from memory, waiting at most flush_seconds for a full one."""
        with self._cond:
            if wait:
                deadline = time.monotonic() + self.flush_seconds
                while len(self._queue) < self.batch_size and not self._stopping.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._in_flight = len(batch)
            return batch

    def _deliver_taken(self, batch: list[PredictionRecord]) -> None:
        try:
            self._deliver(batch)
        except BaseException:
            self._put_back(batch)
            raise
        with self._cond:
            self._in_flight = 0
        self._succeeded()

    def _put_back(self, batch: list[PredictionRecord]) -> None:
        """Return an undelivered batch to the front of the queue (or the spool, after stop)."""
        with self._cond:
            self._in_flight = 0
            if not self._closed:
                self._queue.extendleft(reversed(batch))
                return
        self._spill(batch)

    def _flush_for_stop(self) -> None:
        """At stop: one attempt per memory batch until one fails or time runs out."""
        while time.monotonic() < self._stop_deadline:
            batch = self._take_batch(wait=False)
            if not batch:
                return
            try:
                self._deliver_taken(batch)
            except Exception as exc:
                log.warning("log_sink.stop_flush_failed", sink=self.kind, error=str(exc))
                return

    def _spill(self, records: list[PredictionRecord]) -> None:
        try:
            self.spool.append([record.to_json() for record in records])
        except OSError as exc:  # no disk either: grow memory rather than lose records
            log.error("log_sink.spool_failed", sink=self.kind, error=str(exc), rows=len(records))
            with self._cond:
                self._queue.extend(records)

    def _parse(self, lines: list[str]) -> list[PredictionRecord]:
        records = []
        for line in lines:
            try:
                records.append(PredictionRecord.from_json(line))
            except ValueError:  # a line cut short by a crash: nothing to recover
                log.error("log_sink.bad_spool_line", sink=self.kind, line=line[:200])
        return records

    def _failed(self, exc: Exception, backoff: float) -> None:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self._error is None:
            log.warning(
                "log_sink.degraded", sink=self.kind, error=error, waiting=self.depth(), retry=True
            )
        self._error = error
        log.debug("log_sink.retry", sink=self.kind, retry_in=backoff)

    def _succeeded(self) -> None:
        self._last_contact = time.monotonic()
        if self._error is not None:
            log.info("log_sink.recovered", sink=self.kind, waiting=self.depth())
            self._error = None


class DatabaseSink(QueueSink):
    """Writes batches straight to the monitoring database (no Redis: the embedded set-up)."""

    kind = "database"

    def __init__(
        self,
        settings: Settings,
        store: MonitoringDB | None = None,
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        super().__init__(settings, min_backoff=min_backoff, max_backoff=max_backoff)
        self.store = store or MonitoringDB(settings.resolved_monitoring_db_url)
        self._owns_store = store is None
        self._rejected = self.spool.directory / "rejected.jsonl"

    def destination(self) -> str:
        return repr(self.store)

    def _deliver(self, records: list[PredictionRecord]) -> None:
        # the database migrates itself before its first write; a failure retries like any other
        _inserted, rejected = write_isolating(self.store, records)
        if rejected:  # kept for a person to look at, never replayed
            self._rejected.parent.mkdir(parents=True, exist_ok=True)
            with self._rejected.open("a", encoding="utf-8") as handle:
                handle.writelines(f"{record.to_json()}\n" for record in rejected)
            log.error(
                "log_sink.rejected", sink=self.kind, rows=len(rejected), file=str(self._rejected)
            )

    def _probe(self) -> None:
        self.store.ping()

    def _release(self) -> None:
        if self._owns_store:
            self.store.dispose()


class RedisStreamSink(QueueSink):
    """XADDs batches to the prediction stream; ``mlops log-writer`` moves them to the database."""

    kind = "redis"

    def __init__(
        self,
        settings: Settings,
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("the Redis stream sink needs MLOPS_REDIS_URL")
        super().__init__(settings, min_backoff=min_backoff, max_backoff=max_backoff)
        self.stream = settings.prediction_stream
        self._url = settings.redis_url
        self.redis = redis_client(settings.redis_url)

    def destination(self) -> str:
        return f"redis stream {self.stream}"

    def _deliver(self, records: list[PredictionRecord]) -> None:
        # MULTI/EXEC: a batch lands whole or not at all, so a retry seldom duplicates entries.
        pipe = self.redis.pipeline(transaction=True)
        for record in records:
            pipe.xadd(self.stream, {RECORD_FIELD: record.to_json()})
        pipe.execute()

    def _probe(self) -> None:
        self.redis.ping()

    def _release(self) -> None:
        self.redis.close()


class DiscardSink:
    """Logs nothing. Only for measuring what logging costs (MLOPS_LOG_PREDICTIONS=false)."""

    def start(self) -> None:
        log.warning("prediction_log_disabled", reason="MLOPS_LOG_PREDICTIONS=false")

    def submit(self, record: PredictionRecord) -> None:
        return None

    def depth(self) -> int:
        return 0

    def status(self) -> tuple[bool, str]:
        return True, "disabled: MLOPS_LOG_PREDICTIONS=false, predictions are not logged"

    def stop(self, timeout: float = 10.0) -> None:
        return None


def make_sink(settings: Settings, database: MonitoringDB | None = None) -> PredictionSink:
    """The sink the settings call for: the Redis stream if MLOPS_REDIS_URL, else ``database``
    (the process's monitoring database; one of its own when not given)."""
    if not settings.log_predictions:
        return DiscardSink()
    if settings.redis_url:
        return RedisStreamSink(settings)
    return DatabaseSink(settings, database)
