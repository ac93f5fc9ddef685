"""The challenger scores live traffic in shadow, off the request path.

After the champion answered a request and logged its rows, the predictor hands the rows to
:class:`ShadowScorer`: one append to a bounded queue under a lock, nothing else, so a request
never waits for the challenger and its answer and latency are the champion's alone. A daemon
thread takes whatever is queued (the rows of several requests at once, one ``predict`` call
for all of them, which is how a slow challenger keeps up), scores it with the challenger the
holder has loaded at that moment and submits one shadow :class:`PredictionRecord` per row
(same ``request_id`` and ``row`` as the champion's record, the challenger's version, its own
scoring time) to the predictor's sink: the same durable log path as the champion's rows,
ending in ``shadow_predictions``.

Best effort and bounded: when the challenger falls behind by ``MLOPS_SHADOW_QUEUE_ROWS``
rows, further rows are dropped and counted (``mlops_shadow_dropped_total``), never queued
without bound and never waited for. The thread shares the process's CPU with the requests, so
a challenger far slower than the champion costs throughput under saturation; the queue bound
is what keeps that cost from growing into latency.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.prediction_log.sinks import PredictionSink
from mlops_stack.serving.metrics import PredictorMetrics
from mlops_stack.serving.model import ModelHolder, ServedModel
from mlops_stack.settings import Settings

log = get_logger(__name__)

BATCH_ROWS = 1_000
"""Most rows scored in one ``predict`` call: a backlog is worked off in bounded steps."""
STOP_SECONDS = 5.0


@dataclass(frozen=True)
class ShadowJob:
    """The validated rows of one answered request, waiting for the challenger."""

    request_id: str
    champion_version: str
    rows: list[dict[str, Any]]


class ShadowScorer:
    """A bounded queue of answered rows and the thread that scores them with the challenger."""

    def __init__(
        self,
        holder: ModelHolder,
        sink: PredictionSink,
        metrics: PredictorMetrics,
        settings: Settings,
    ) -> None:
        self.holder = holder
        self.sink = sink
        self.metrics = metrics
        self.capacity = settings.shadow_queue_rows
        self._jobs: deque[ShadowJob] = deque()
        self._queued = 0  # rows in _jobs
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self.scored = 0  # rows since start, for /model
        self.dropped = 0
        metrics.track_shadow_queue(self.depth)

    # --- what the request path calls -----------------------------------------------------------
    def submit(self, request_id: str, champion_version: str, rows: list[dict[str, Any]]) -> None:
        """Queue a request's rows for the challenger, or drop them if the queue is full.

        O(1) and never blocks beyond a short lock; never raises. Nothing is queued when no
        challenger is loaded (or it is the version that just answered).
        """
        challenger = self.holder.shadow
        if challenger is None or challenger.version == champion_version:
            return
        with self._cond:
            if self._running and self._queued + len(rows) <= self.capacity:
                self._jobs.append(ShadowJob(request_id, champion_version, rows))
                self._queued += len(rows)
                self._cond.notify()
                return
            reason = "queue_full" if self._running else "stopped"
        self._drop(len(rows), reason)

    def depth(self) -> int:
        """Rows waiting for the challenger."""
        with self._cond:
            return self._queued

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop after the batch being scored (its rows still reach the sink); drop the rest.

        Call it before the sink stops, so the last shadow records are flushed with the others.
        """
        with self._cond:
            self._running = False
            rest = self._queued
            self._jobs.clear()
            self._queued = 0
            self._cond.notify_all()
        if rest:
            self._drop(rest, "stopped")
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            try:
                self._score(jobs)
            except Exception as exc:  # a bug here must not end shadow scoring for good
                log.exception("shadow_scoring_crashed", error=str(exc)[:300])

    def _take(self) -> list[ShadowJob] | None:
        """Every queued job, up to ``BATCH_ROWS`` rows (at least one job); None at stop."""
        with self._cond:
            while not self._jobs and self._running:
                self._cond.wait()
            if not self._running:
                return None
            jobs = [self._jobs.popleft()]
            rows = len(jobs[0].rows)
            while self._jobs and rows + len(self._jobs[0].rows) <= BATCH_ROWS:
                job = self._jobs.popleft()
                jobs.append(job)
                rows += len(job.rows)
            self._queued -= rows
            return jobs

    def _score(self, jobs: list[ShadowJob]) -> None:
        """Score the jobs' rows with the challenger loaded now, in one call, and log them.

        Rows whose champion is now the challenger (a promotion happened meanwhile) are left out:
        they were answered by that version already. A call that raises is retried job by job,
        so one bad request costs only its own rows.
        """
        challenger = self.holder.shadow  # read once: a swap meanwhile changes nothing here
        if challenger is None:
            return  # the challenger left (promoted or withdrawn): nothing to compare any more
        jobs = [job for job in jobs if job.champion_version != challenger.version]
        if not jobs:
            return
        rows = [row for job in jobs for row in job.rows]
        started = time.perf_counter()
        try:
            answers = challenger.predict(rows)
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:
                    self._score([job])
                return
            log.warning(
                "shadow_scoring_failed",
                version=challenger.version,
                request_id=jobs[0].request_id,
                error=str(exc)[:300],
            )
            self._drop(len(rows), "failed")
            return
        seconds = time.perf_counter() - started
        self._log(challenger, jobs, answers, seconds)

    def _log(
        self, challenger: ServedModel, jobs: list[ShadowJob], answers: list[Any], seconds: float
    ) -> None:
        """One shadow record per row to the sink, keyed like the champion's record."""
        now = datetime.now(UTC)
        position = 0
        for job in jobs:
            for row in range(len(job.rows)):
                prediction, probabilities, _ = answers[position]
                position += 1
                self.sink.submit(
                    PredictionRecord(
                        request_id=job.request_id,
                        row=row,
                        created_at=now,
                        model_name=challenger.name,
                        model_version=challenger.version,
                        features={},  # the champion's record holds them
                        prediction=prediction,
                        probabilities=probabilities,
                        latency_ms=seconds * 1000,
                        shadow=True,
                    )
                )
        self.metrics.shadow_latency.observe(seconds)
        self.metrics.shadow_predictions.labels(challenger.version).inc(position)
        with self._cond:
            self.scored += position

    def _drop(self, rows: int, reason: str) -> None:
        self.metrics.shadow_dropped.labels(reason).inc(rows)
        with self._cond:
            self.dropped += rows
