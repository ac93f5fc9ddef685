"""Prometheus metrics of the predictor: a registry per app, or every worker's files summed.

One worker (the default, and every app built in tests or benchmarks): the series live in memory
in a registry per app (not the global one), so several apps in one process never clash with
"duplicated timeseries" errors; /metrics exposes exactly this app's series.

Several workers (`mlops serve api --workers N`): prometheus_client's multiprocess mode
(``serving.multiprocess`` sets it up before the workers start). Every series is written to
per-process files and /metrics sums all the workers' files, so any worker answers for all of
them: counters, histograms and the regression summary (count and sum; the client keeps no
quantiles in either mode) add up; the two queue depths are ``livesum`` gauges (the rows waiting
in the workers alive now) and the log's degraded flag a ``livemax`` one (1 if any live worker's
log path is degraded). Gauges cannot read a function in this mode (the scrape runs in one
worker, the queues are in all of them), so each worker samples them every ``SAMPLE_SECONDS``
and at each scrape it answers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from mlops_stack.logs import get_logger
from mlops_stack.serving.multiprocess import ENV, forget_dead_workers

log = get_logger(__name__)

NUMBER = "number"
"""The ``prediction`` label of a regression model's rows: one series, not one per value."""
SAMPLE_SECONDS = 1.0
"""How stale a queue depth read from another worker can be, with several workers (a scrape
every 15 s or more sees at most this much lag; each sample is two memory writes)."""


def multiprocess_directory() -> Path | None:
    """The directory of prometheus_client's multiprocess mode when this process is in it.

    The library decided at its import, from the environment; its value class tells what it
    decided (the variable alone could have been set after the import).
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(os.environ[ENV])


class PredictorMetrics:
    """The series /metrics exposes: traffic, latency, predictions, micro-batch sizes, unseen
    categories, log queue, reloads, and the challenger's shadow scoring."""

    def __init__(
        self, queue_depth: Callable[[], float], log_degraded: Callable[[], float] = lambda: 0.0
    ):
        self.directory = multiprocess_directory()
        self.registry = CollectorRegistry()
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.requests = Counter(
            "mlops_http_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlops_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlops_predictions",
            "Rows predicted, by model version and predicted class ('number' for a regression "
            "model).",
            ["model_version", "prediction"],
            registry=self.registry,
        )
        self.predicted_values = Summary(
            "mlops_predicted_values",
            "Values a regression model predicted, by model version (sum / count: their mean).",
            ["model_version"],
            registry=self.registry,
        )
        self.microbatch_rows = Histogram(
            "mlops_microbatch_rows",
            "Rows scored per model call by the micro-batcher (MLOPS_MICROBATCH_*): 1 while "
            "requests arrive one at a time, more as concurrent requests share a call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )
        self.unseen_categories = Counter(
            "mlops_unseen_category_values",
            "Values of categorical features that training never saw, by feature (the model "
            "treats them as unknown).",
            ["feature"],
            registry=self.registry,
        )
        self._sampled.append(
            (
                Gauge(
                    "mlops_prediction_log_queue_depth",
                    "Predictions answered but not yet handed on durably (memory and spool).",
                    multiprocess_mode="livesum",
                    registry=self.registry,
                ),
                queue_depth,
            )
        )
        self._sampled.append(
            (
                Gauge(
                    "mlops_prediction_log_degraded",
                    "1 while the prediction log is degraded (Redis or the database unreachable: "
                    "answered rows are spooled and replayed later), else 0; with several "
                    "workers, 1 if any live worker's is.",
                    multiprocess_mode="livemax",
                    registry=self.registry,
                ),
                log_degraded,
            )
        )
        self.reloads = Counter(
            "mlops_model_reloads",
            "Model (re)loads after the alias moved, by outcome (ok or failed).",
            ["outcome"],
            registry=self.registry,
        )

        self.shadow_predictions = Counter(
            "mlops_shadow_predictions",
            "Rows the challenger scored in shadow (logged, never answered), by its version.",
            ["version"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "mlops_shadow_dropped",
            "Rows not scored in shadow, by reason: queue_full (the challenger could not keep "
            "up; MLOPS_SHADOW_QUEUE_ROWS), failed (the challenger raised), stopped (shut down).",
            ["reason"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "mlops_shadow_scoring_seconds",
            "Time the challenger took to score one shadow batch (the rows queued together).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self._shadow_queue = Gauge(
            "mlops_shadow_queue_depth",
            "Rows waiting to be scored by the challenger in shadow.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self._exposed = self.registry
        if self.directory is not None:
            # the registry above must not be exposed too: the files already hold its series
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=str(self.directory))  # type: ignore[no-untyped-call]

    def track_shadow_queue(self, depth: Callable[[], float]) -> None:
        """Read the shadow queue's depth at each scrape (the scorer is built after the metrics)."""
        self._sampled.append((self._shadow_queue, depth))

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        """The Prometheus text of /metrics: this app's series, or every worker's summed."""
        self.sample()
        if self.directory is not None:
            forget_dead_workers(self.directory)
        return generate_latest(self._exposed)

    def sample(self) -> None:
        """Set each tracked gauge from its function (what ``Gauge.set_function`` would read)."""
        for gauge, read in self._sampled:
            gauge.set(read())

    # --- life cycle (the app's lifespan) -------------------------------------------------------
    def start(self) -> None:
        """With several workers, sample the queue depths in the background until ``stop``."""
        if self.directory is None or self._sampler is not None:
            return
        self._stop.clear()
        self._sampler = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        """Stop sampling; with several workers, take this worker's queue depths out of the sum
        (its counters stay: they counted real requests)."""
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None
        if self.directory is not None:
            mark_process_dead(os.getpid(), str(self.directory))  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self.sample()
            except Exception as exc:  # a failed read must not end the sampling for good
                log.warning("metrics.sample_failed", error=str(exc)[:300])
