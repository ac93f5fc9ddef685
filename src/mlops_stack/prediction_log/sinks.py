"""In-process sinks: how the predictor hands prediction records to the log path.

Two ways in, for two guarantees:

- :meth:`PredictionSink.write` (the champion's answered rows): returns only once every record is
  durable, in the Redis stream (XADD acknowledged) or appended to the spool under
  ``<data_dir>/spool``, or raises :class:`LogUnavailable` when neither could take them; the
  predictor answers 200 only after it returned. The records of every request awaiting in one
  event-loop tick go in one write (one Redis round trip), and while a write is in flight the
  next tick's records gather for the one after: concurrent requests share the cost. While Redis
  is down, writes go straight to the spool (a circuit opened by the first failure, closed by
  the background thread when Redis answers again), so no request waits for a Redis timeout
  more than once. The embedded sink (no Redis) makes records durable in the spool and lets its
  thread move them into the database.
- :meth:`PredictionSink.submit` (the shadow challenger's records): best effort, never blocks;
  appended to memory (beyond ``MLOPS_PREDICTION_LOG_BUFFER_ROWS``, to the spool) and delivered
  in batches by the background thread. A kill of the process loses the shadow records still in
  memory.

The background thread also replays the spool, oldest segment first, once the destination
answers (also after a restart: segments a dead process left are adopted), and retries with a
capped backoff while the destination is down, reporting the log path degraded meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

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
WRITE_TIMEOUT = 0.5
"""Longest a durable XADD waits for Redis (connect or answer) before the rows go to the spool;
paid once per outage, after which the circuit sends rows to the spool without trying Redis."""


def _reason(exc: Exception) -> str:
    """Why a delivery failed, as the log and /ready say it: type, message, one line."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class LogUnavailable(Exception):
    """Neither the destination nor the spool took the records: they are not logged."""


class LogStatus(NamedTuple):
    """Whether the log path works as it should (``ok``; False: degraded), and why."""

    ok: bool
    detail: str


@runtime_checkable
class PredictionSink(Protocol):
    """What the predictor hands records to."""

    def start(self) -> None: ...

    async def write(self, records: list[PredictionRecord]) -> None:
        """Return once every record is durable; raise :class:`LogUnavailable` if it cannot be."""

    def submit(self, record: PredictionRecord) -> None:
        """Take a record, best effort: never blocks the caller, never raises."""

    def depth(self) -> int:
        """Records not yet handed on to the destination (memory and spool)."""

    def status(self) -> LogStatus:
        """Whether the log path works as it should, and a reason a person can read (cheap)."""

    def accepting(self) -> tuple[bool, str]:
        """Whether a record written now would be made durable (may probe the spool's disk)."""

    async def aclose(self) -> None:
        """Close what :meth:`write` opened on the event loop (called before :meth:`stop`)."""

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed in ``timeout``; the rest stays in the spool for next start."""


class QueueSink:
    """The durable writes, queue, spool, batching and retry shared by the sinks; subclasses
    only deliver."""

    kind = "queue"

    def __init__(
        self,
        settings: Settings,
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.batch_size = settings.prediction_log_batch_rows
        self.flush_seconds = settings.prediction_log_flush_seconds
        self.capacity = settings.prediction_log_buffer_rows
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
        self._cycle_started = 0.0
        # the durable writes, on the event loop: records of this tick and their waiters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: list[PredictionRecord] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._spool_error: str | None = None  # why the last durable spool append failed

    # --- what the predictor calls ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            waiting = self.spool.recover()
        except OSError as exc:  # the predictor still serves while its destination takes rows
            log.error("log_sink.spool_unusable", sink=self.kind, error=str(exc))
        else:
            if waiting:
                log.info("log_sink.spool_found", sink=self.kind, rows=waiting)
        self._stopping.clear()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"log-sink-{self.kind}", daemon=True)
        self._thread.start()
        log.info("log_sink.started", sink=self.kind, destination=self.destination())

    async def write(self, records: list[PredictionRecord]) -> None:
        """Join this tick's write and wait for it (see the module's docstring)."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        waiter: asyncio.Future[None] = loop.create_future()
        self._tick.extend(records)
        self._waiters.append(waiter)
        if self._flusher is None:  # starts on the next tick: this tick's requests join first
            self._flusher = loop.create_task(self._flush())
        await waiter

    def submit(self, record: PredictionRecord) -> None:
        try:
            with self._cond:
                if len(self._queue) < self.capacity and not self._closed:
                    self._queue.append(record)
                    if len(self._queue) in (1, self.batch_size):
                        self._cond.notify()
                    return
            self._spill([record])
        except Exception as exc:  # a prediction must never fail because of a shadow record
            log.error("log_sink.submit_failed", sink=self.kind, error=str(exc))

    def depth(self) -> int:
        with self._cond:
            in_memory = len(self._queue) + self._in_flight
        return in_memory + len(self._tick) + self.spool.rows()

    def status(self) -> LogStatus:
        if self._thread is None or not self._thread.is_alive():
            return LogStatus(False, f"{self.kind} log sink is not running")
        if self._error is not None:
            return LogStatus(
                False,
                f"degraded: {self.kind} unreachable ({self._error}); answered rows are kept in "
                f"the spool ({self.spool.directory}) for retry; {self.depth()} records waiting",
            )
        return LogStatus(
            True, f"ok: logging to {self.destination()}, {self.depth()} records waiting"
        )

    def accepting(self) -> tuple[bool, str]:
        ok, detail = self.spool.writable()
        if not ok:
            return False, f"unavailable: the spool cannot be written ({detail})"
        return True, detail

    async def aclose(self) -> None:
        return None

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
        try:
            self.spool.close()
        except OSError as exc:
            log.error("log_sink.spool_close_failed", sink=self.kind, error=str(exc))
        self._release()
        log.info("log_sink.stopped", sink=self.kind)

    # --- what a subclass provides ------------------------------------------------------------
    def destination(self) -> str:
        raise NotImplementedError

    async def _persist(self, records: list[PredictionRecord]) -> None:
        """Make the records durable or raise LogUnavailable: here, the spool (the thread moves
        them on); a sink with a durable destination of its own tries that first."""
        self._spool_durably([record.to_json() for record in records])

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write on ``loop`` from now on (a test client may run each app start on a new loop)."""
        self._loop, self._tick, self._waiters, self._flusher = loop, [], [], None

    def _prepare(self) -> None:
        """Called before each cycle until it succeeds once (e.g. create the tables)."""

    def _deliver(self, records: list[PredictionRecord]) -> None:
        """Hand the records on durably, or raise."""
        raise NotImplementedError

    def _probe(self) -> None:
        """Raise if the destination is unreachable (checked while idle)."""

    def _release(self) -> None:
        """Close connections at stop."""

    # --- the durable writes (event loop) -----------------------------------------------------
    async def _flush(self) -> None:
        """Write what gathered, then what gathered meanwhile, until nothing waits."""
        try:
            while self._tick:
                records, waiters = self._tick, self._waiters
                self._tick, self._waiters = [], []
                error: LogUnavailable | None = None
                try:
                    await self._persist(records)
                except LogUnavailable as exc:
                    error = exc
                except Exception as exc:  # never leave a request waiting, nor answer it 200
                    log.exception("log_sink.write_crashed", sink=self.kind, error=str(exc)[:300])
                    error = LogUnavailable(f"{type(exc).__name__}: {exc}")
                for waiter in waiters:
                    if waiter.done():  # the request was cancelled meanwhile
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        finally:
            self._flusher = None

    def _spool_durably(self, lines: list[str]) -> None:
        """Append to the spool, in the OS's cache on return; LogUnavailable if it refuses."""
        try:
            self.spool.append(lines)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if self._spool_error is None:
                log.error("log_sink.spool_failed", sink=self.kind, error=error, rows=len(lines))
            self._spool_error = error
            raise LogUnavailable(f"the spool refused the rows ({error})") from None
        if self._spool_error is not None:
            log.info("log_sink.spool_recovered", sink=self.kind)
            self._spool_error = None
        if self.spool.sync_due():  # on disk within about a second, off the event loop
            asyncio.get_running_loop().run_in_executor(None, self._sync_spool)

    def _sync_spool(self) -> None:
        try:
            self.spool.sync()
        except OSError as exc:
            log.error("log_sink.spool_sync_failed", sink=self.kind, error=str(exc))

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
        self._cycle_started = time.monotonic()
        self._prepare()
        lines = self._peek_spool()
        if lines:
            records = self._parse(lines)
            if records:
                self._deliver(records)
            self._consume_spool(len(lines))
            self._succeeded()
        batch = self._take_batch(wait=not lines)
        if batch:
            self._deliver_taken(batch)
        elif not lines and time.monotonic() - self._last_contact > PROBE_SECONDS:
            self._probe()
            self._succeeded()

    def _peek_spool(self) -> list[str]:
        """The next spooled lines; none when the spool's disk fails (that is not the
        destination's failure, and must not open the circuit)."""
        try:
            return self.spool.peek(self.batch_size)
        except OSError as exc:
            log.error("log_sink.spool_read_failed", sink=self.kind, error=str(exc))
            return []

    def _consume_spool(self, count: int) -> None:
        try:
            self.spool.consume(count)
        except OSError as exc:  # the lines stay, and are delivered again: harmless
            log.error("log_sink.spool_consume_failed", sink=self.kind, error=str(exc))

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
        error = _reason(exc)
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
    """Writes batches straight to the monitoring database (no Redis: the embedded set-up).

    A durable write is a spool append; the thread moves the spool into the database in batches
    (a commit per request would cost a database round trip, and an fsync, on every answer).
    """

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
    """XADDs records to the prediction stream; ``mlops log-writer`` moves them to the database.

    Durable writes XADD from the event loop (``redis.asyncio``: measured 0.25 ms and 0.14 ms of
    CPU per one-row write on loopback, against 0.5 ms and 0.23 ms for the threaded client
    behind ``run_in_executor``); the thread replays the spool and the shadow records with the
    threaded client.
    """

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
        self._async: aioredis.Redis | None = None
        self._circuit = threading.Lock()
        self._down_since: float | None = None  # when a write last failed; None: Redis answers

    def destination(self) -> str:
        return f"redis stream {self.stream}"

    def status(self) -> LogStatus:
        if self._down_since is not None and self._error is None:
            return LogStatus(
                False,
                f"degraded: redis unreachable; answered rows go to the spool "
                f"({self.spool.directory}) and are replayed when it answers; "
                f"{self.depth()} records waiting",
            )
        return super().status()

    def accepting(self) -> tuple[bool, str]:
        if self._down_since is None and self._error is None:
            return True, f"{self.destination()} reachable"
        return super().accepting()

    async def aclose(self) -> None:
        client, self._async, self._loop = self._async, None, None
        if client is not None:
            await client.aclose()

    # --- durable writes ----------------------------------------------------------------------
    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        super()._bind(loop)
        # a client belongs to the loop it connected on; one of an earlier loop is dropped
        self._async = aioredis.Redis.from_url(
            self._url,
            socket_timeout=WRITE_TIMEOUT,
            socket_connect_timeout=WRITE_TIMEOUT,
            retry=AsyncRetry(NoBackoff(), 1),  # one retry: a pooled connection Redis closed
        )

    async def _persist(self, records: list[PredictionRecord]) -> None:
        lines = [record.to_json() for record in records]
        if self._down_since is None and self._async is not None:
            try:
                pipe = self._async.pipeline(transaction=False)  # duplicates are harmless
                for line in lines:
                    pipe.xadd(self.stream, {RECORD_FIELD: line})
                await pipe.execute()
                return
            except Exception as exc:  # any failure: the spool takes the rows
                self._trip(exc)
        self._spool_durably(lines)

    def _trip(self, exc: Exception) -> None:
        """Open the circuit: writes go to the spool until the thread reaches Redis again."""
        error = _reason(exc)
        with self._circuit:
            first = self._down_since is None
            self._down_since = time.monotonic()
        if first:  # the thread finds the spooled rows and retries Redis with its backoff
            log.warning("log_sink.redis_write_failed", sink=self.kind, error=error, spool=True)

    # --- the thread --------------------------------------------------------------------------
    def _failed(self, exc: Exception, backoff: float) -> None:
        with self._circuit:  # the thread found Redis down first: writes skip it at once
            self._down_since = time.monotonic()
        super()._failed(exc, backoff)

    def _succeeded(self) -> None:
        with self._circuit:  # only a contact that began after the last failure closes it
            if self._down_since is not None and self._down_since < self._cycle_started:
                log.info("log_sink.redis_writes_resumed", sink=self.kind)
                self._down_since = None
        super()._succeeded()

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
    """Logs nothing. Only for measuring what logging costs (MLOPS_PREDICTION_LOG_ENABLED=false)."""

    def start(self) -> None:
        log.warning("prediction_log_disabled", reason="MLOPS_PREDICTION_LOG_ENABLED=false")

    async def write(self, records: list[PredictionRecord]) -> None:
        return None

    def submit(self, record: PredictionRecord) -> None:
        return None

    def depth(self) -> int:
        return 0

    def status(self) -> LogStatus:
        return LogStatus(
            True, "disabled: MLOPS_PREDICTION_LOG_ENABLED=false, predictions are not logged"
        )

    def accepting(self) -> tuple[bool, str]:
        return True, "disabled: nothing to write"

    async def aclose(self) -> None:
        return None

    def stop(self, timeout: float = 10.0) -> None:
        return None


def make_sink(settings: Settings, database: MonitoringDB | None = None) -> PredictionSink:
    """The sink the settings call for: the Redis stream if MLOPS_REDIS_URL, else ``database``
    (the process's monitoring database; one of its own when not given)."""
    if not settings.prediction_log_enabled:
        return DiscardSink()
    if settings.redis_url:
        return RedisStreamSink(settings)
    return DatabaseSink(settings, database)
