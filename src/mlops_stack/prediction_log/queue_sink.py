"""The machinery every real sink shares: durable writes, the queue, the spool, batching, retry.

:class:`QueueSink` does all of it and leaves one thing to a subclass, how a batch is delivered
(:class:`~mlops_stack.prediction_log.sinks.DatabaseSink` writes it to the database,
:class:`~mlops_stack.prediction_log.sinks.RedisStreamSink` XADDs it). Kept apart from the
concrete sinks so that each reads as what it delivers to; ``sinks``' docstring says what the
two ways in (``write`` and ``submit``) guarantee.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

from mlops_stack.backoff import Backoff
from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.prediction_log.spool import Spool
from mlops_stack.settings import Settings

log = get_logger(__name__)

MIN_BACKOFF, MAX_BACKOFF = 0.1, 5.0
PROBE_SECONDS = 5.0  # an idle sink checks its destination this often, so status() stays true


def failure_reason(exc: Exception) -> str:
    """Why a delivery failed, as the log and /ready say it: type, message, one line."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class LogUnavailable(Exception):
    """Neither the destination nor the spool took the records: they are not logged."""


class LogStatus(NamedTuple):
    """Whether the log path works as it should (``ok``; False: degraded), and why."""

    ok: bool
    detail: str


class QueueSink:
    """The durable writes, queue, spool, batching and retry shared by the sinks; subclasses
    only deliver.

    About thirty methods, most of them a few lines: the public face (``start``, ``write``,
    ``submit``, ``status``, ``stop``), the hooks a subclass fills (``_deliver``, ``_probe``,
    ``_release``) and the background thread's cycle. Why one class: the queue, the spool, the
    in-flight tick and the circuit are guarded by one condition variable, and what ``stop``
    flushes depends on all of them; split into classes, every piece would reach into the
    others' state under that same lock.
    """

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
        error = failure_reason(exc)
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
