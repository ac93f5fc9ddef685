"""Adaptive micro-batching: the rows of concurrent requests scored in one model call.

A scikit-learn pipeline costs nearly the same per call for 1 row as for 32 (the
ColumnTransformer's fixed cost dominates; docs/performance.md), so a predictor that calls it
once per request is capped near one call's cost per request. :class:`MicroBatcher` queues each
request's validated rows and scores whatever is queued in ONE ``ServedModel.predict`` call,
then hands every caller exactly its own rows' answers, in order.

Adaptive, so that one request at a time is not slowed down:
- a request meeting an empty queue schedules the dispatch for the end of the current
  event-loop tick: the requests whose handlers run in the same tick join it, and a lone
  request waits for nothing (it waits longer, up to ``MLOPS_MICROBATCH_MAX_WAIT_MS``, only
  when that setting is above 0 and the previous batch held several requests);
- the batch is scored on the event loop, like the unbatched call it replaces: meanwhile the
  next requests pile up in the sockets, their handlers run in the ticks after, and they go
  together as the next batch.
So the batch size follows the load: 1 at concurrency 1, about the concurrency under saturation.
Measured against one scoring thread (which would let the loop parse while numpy releases the
GIL): on one core the thread gave no more throughput, cost CPU at concurrency 1 (a thread hop
per request) and tripled p99 at 32 connections (the loop waits for the GIL at every socket
call while the thread scores); docs/serving.md "Micro-batching" has the figures.

A batch holds rows of one ``ServedModel`` object only (a hot swap in between starts a new
batch), at most ``MLOPS_MICROBATCH_MAX_ROWS`` rows; a request with more rows is scored alone,
never split. If the model raises, every request of that batch gets the exception and the next
batch is scored as usual. Disabled, :meth:`MicroBatcher.predict` is ``model.predict(rows)``
on the event loop, as before the batcher existed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops_stack.serving.model import Answer, ServedModel
from mlops_stack.settings import Settings


@dataclass(eq=False)
class _Job:
    """One request's rows and the future its handler awaits."""

    model: ServedModel
    rows: list[dict[str, Any]]
    answer: asyncio.Future[list[Answer]]
    arrived: float


class MicroBatcher:
    """Queues the rows of concurrent requests and scores them together (module docstring)."""

    def __init__(self, settings: Settings, observe_rows: Callable[[int], None] = lambda n: None):
        self.enabled = settings.microbatch_enabled
        self.max_rows = settings.microbatch_max_rows
        self.max_wait = settings.microbatch_max_wait_ms / 1000
        self.observe_rows = observe_rows  # the batch-size histogram
        self._queue: deque[_Job] = deque()
        self._scheduled = False  # a dispatch is already due on the loop
        self._last_requests = 1  # requests in the previous batch: is there concurrency?
        self._idle: asyncio.Event | None = None

    # --- what the request path calls -----------------------------------------------------------
    async def predict(self, model: ServedModel, rows: list[dict[str, Any]]) -> list[Answer]:
        """The answers to ``rows``, scored together with the rows of concurrent requests.

        Raises what ``model.predict`` raised for the batch these rows were in.
        """
        if not self.enabled:
            return model.predict(rows)
        loop = asyncio.get_running_loop()
        job = _Job(model, rows, loop.create_future(), loop.time())
        self._queue.append(job)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)  # after the handlers already ready in this tick
        return await job.answer

    def queued(self) -> int:
        """Requests waiting for the scorer (not the batch being scored)."""
        return len(self._queue)

    # --- life cycle (the app's lifespan) -------------------------------------------------------
    async def aclose(self) -> None:
        """Wait until every queued request is scored: those of a shutting-down server are
        still answered and logged before the sink stops."""
        while self._queue:
            self._idle = self._idle or asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    # --- on the event loop ---------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Score the next batch and answer its requests; come back for the rest next tick."""
        self._scheduled = False
        self._drop_abandoned()
        if not self._queue:
            self._set_idle()
            return
        loop = asyncio.get_running_loop()
        wait = self._queue[0].arrived + self.max_wait - loop.time()
        if self._last_requests > 1 and wait > 0 and self._queued_rows() < self.max_rows:
            self._scheduled = True
            loop.call_later(wait, self._dispatch)
            return
        batch = self._take()
        self._last_requests = len(batch)
        self._score(batch)
        if self._queue:  # another model's requests, or more than max_rows: after this tick
            self._scheduled = True
            loop.call_soon(self._dispatch)
        else:
            self._set_idle()

    def _score(self, batch: list[_Job]) -> None:
        """One ``predict`` call for the batch; each request gets its own slice of the answers,
        or the batch's exception."""
        rows = [row for job in batch for row in job.rows]
        self.observe_rows(len(rows))
        try:
            answers = batch[0].model.predict(rows)
            if len(answers) != len(rows):
                raise RuntimeError(f"the model answered {len(answers)} of {len(rows)} rows")
        except Exception as exc:
            for job in batch:
                if not job.answer.done():
                    job.answer.set_exception(exc)
            return
        start = 0
        for job in batch:
            end = start + len(job.rows)
            if not job.answer.done():  # a cancelled request needs no answer
                job.answer.set_result(answers[start:end])
            start = end

    def _take(self) -> list[_Job]:
        """The next batch: the oldest request, and the later ones of the same model object
        that fit in ``max_rows`` (a request larger than that alone), in arrival order."""
        first = self._queue.popleft()
        batch, size, rest = [first], len(first.rows), deque[_Job]()
        while self._queue:
            job = self._queue.popleft()
            if job.model is not first.model:
                rest.append(job)
            elif size + len(job.rows) <= self.max_rows:
                batch.append(job)
                size += len(job.rows)
            else:
                rest.append(job)
                rest.extend(self._queue)
                self._queue.clear()
        self._queue = rest
        return batch

    def _queued_rows(self) -> int:
        return sum(len(job.rows) for job in self._queue)

    def _drop_abandoned(self) -> None:
        """Requests cancelled while queued (a client gone, a shutdown) are not scored."""
        if any(job.answer.done() for job in self._queue):
            self._queue = deque(job for job in self._queue if not job.answer.done())

    def _set_idle(self) -> None:
        if self._idle is not None and not self._queue:
            self._idle.set()
