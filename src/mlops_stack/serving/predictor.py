"""The predictor's state, one object per app: what the routes get through ``Depends``.

Built in one place (``create_app``), stored as ``app.state.predictor`` and read by the
dependencies in ``serving.dependencies``; nothing here knows about HTTP, so a composition root
can build it from its own parts and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.names import Task
from mlops_stack.prediction_log.sinks import PredictionSink
from mlops_stack.serving.batcher import MicroBatcher
from mlops_stack.serving.metrics import NUMBER, PredictorMetrics
from mlops_stack.serving.model import Answer, ModelHolder, ServedModel
from mlops_stack.serving.requests import FeedbackItem
from mlops_stack.serving.shadow import ShadowScorer
from mlops_stack.stack import Stack

FEEDBACK_POLL_SECONDS = 0.25
"""Pause between two looks for answered rows /feedback does not know yet."""
RECENT_KEYS = 100_000
"""Answered rows remembered in memory for /feedback (a few MB at most)."""


class NoModel(Exception):
    """No version holds the alias yet; every route that needs a model answers 503."""


class FeedbackOutcome(NamedTuple):
    """How many labels were stored, and the (request id, row) of the items matching none."""

    accepted: int
    unknown: list[tuple[str, int]]


class Predictor:
    """The app's state: model holder, micro-batcher, log sink, shadow scorer, log store,
    metrics and recent request ids."""

    def __init__(self, stack: Stack, sink: PredictionSink):
        self.stack = stack
        self.settings = stack.settings
        self.sink = sink
        self.store = stack.predictions
        self.metrics = PredictorMetrics(
            queue_depth=sink.depth, log_degraded=lambda: 0.0 if sink.status().ok else 1.0
        )
        self.holder = ModelHolder(stack.registry, self.settings, on_reload=self.metrics.reloaded)
        self.shadow = ShadowScorer(self.holder, sink, self.metrics, self.settings)
        self.batcher = MicroBatcher(self.settings, self.metrics.microbatch_rows.observe)
        self.recent: OrderedDict[tuple[str, int], None] = OrderedDict()

    def model(self) -> ServedModel:
        """The model being served now; NoModel until a version holds the alias."""
        model = self.holder.current
        if model is None:
            raise NoModel
        return model

    def remember(self, request_id: str, rows: int) -> None:
        """Recent answers, so feedback sent before the log writer caught up is still known."""
        for row in range(rows):
            self.recent[(request_id, row)] = None
        while len(self.recent) > RECENT_KEYS:
            self.recent.popitem(last=False)

    async def answer(
        self, request_id: str, model: ServedModel, rows: list[dict[str, Any]], started: float
    ) -> list[Answer]:
        """Predict the rows of one request, make their records durable, then count them and
        queue them for the challenger.

        Returns only once every row is in the prediction log (the Redis stream or the spool):
        the 200 that follows promises it. Raises :class:`LogUnavailable` when the log can take
        no rows; nothing is then counted or remembered, and the client is told to retry. The
        client's answer and latency are the champion's: the challenger scores the rows later,
        on the shadow scorer's thread (``serving.shadow``), and its records are best effort.
        The rows are scored together with concurrent requests' rows (``serving.batcher``);
        everything else is this request's own: its id, rows, version, latency and log write.
        """
        results = await self.batcher.predict(model, rows)
        latency_ms = (time.perf_counter() - started) * 1000
        now = datetime.now(UTC)
        await self.sink.write(
            [
                PredictionRecord(
                    request_id=request_id,
                    row=index,
                    created_at=now,
                    model_name=model.name,
                    model_version=model.version,
                    features=row,
                    prediction=prediction,
                    probabilities=proba,
                    latency_ms=latency_ms,
                )
                for index, (row, (prediction, proba, _)) in enumerate(
                    zip(rows, results, strict=True)
                )
            ]
        )
        self.count(model, results)
        self.remember(request_id, len(rows))
        self.shadow.submit(request_id, model.version, rows)
        return results

    def count(self, model: ServedModel, results: list[Answer]) -> None:
        """Predictions by class (a regression model's values in one summary, not a series per
        value) and unseen categories by feature."""
        metrics = self.metrics
        for prediction, _, unseen in results:
            if model.task is Task.REGRESSION:
                metrics.predictions.labels(model.version, NUMBER).inc()
                metrics.predicted_values.labels(model.version).observe(prediction)
            else:
                metrics.predictions.labels(model.version, str(prediction)).inc()
            for value in unseen:
                metrics.unseen_categories.labels(value.feature).inc()

    async def feedback(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        """Store the labels of answered rows; items matching no answer are returned, not stored.

        A row this process answered is known at once (``recent``). A row another worker or
        replica answered is known once the log writer has put it in the database, a moment
        after its answer: feedback sent right after a prediction must not be refused for that,
        so the rows not known yet are looked for again until ``MLOPS_FEEDBACK_WAIT_SECONDS``
        have passed.

        Raises what the monitoring database raises, having stored nothing: labels are only
        written after every item was looked up.
        """
        keys = [(item.request_id, item.row) for item in items]
        known = self.known(keys)
        deadline = time.monotonic() + self.settings.feedback_wait_seconds
        while (missing := [k for k in keys if k not in known]) and time.monotonic() < deadline:
            await asyncio.sleep(FEEDBACK_POLL_SECONDS)
            known |= self.known(missing)
        accepted = [
            (item.request_id, item.row, str(item.label))
            for item, key in zip(items, keys, strict=True)
            if key in known
        ]
        if accepted:
            self.store.record_feedback(accepted)
        return FeedbackOutcome(len(accepted), [key for key in keys if key not in known])

    def known(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """The (request id, row) keys of answered rows: remembered here, or in the database."""
        found = {key for key in keys if key in self.recent}
        return found | self.store.known_predictions([key for key in keys if key not in found])
