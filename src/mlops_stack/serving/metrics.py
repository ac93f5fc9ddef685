"""Prometheus metrics of the predictor, on a registry of its own per app instance.

A registry per app (not the global one) lets tests and benchmarks build several apps in one
process without "duplicated timeseries" errors; /metrics exposes exactly this app's series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

NUMBER = "number"
"""The ``prediction`` label of a regression model's rows: one series, not one per value."""


class PredictorMetrics:
    """The series /metrics exposes: traffic, latency, predictions, unseen categories, log queue,
    reloads, and the challenger's shadow scoring."""

    def __init__(self, queue_depth: Callable[[], float]):
        self.registry = CollectorRegistry()
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
        self.unseen_categories = Counter(
            "mlops_unseen_category_values",
            "Values of categorical features that training never saw, by feature (the model "
            "treats them as unknown).",
            ["feature"],
            registry=self.registry,
        )
        queue = Gauge(
            "mlops_prediction_log_queue_depth",
            "Predictions answered but not yet handed on durably (memory and spool).",
            registry=self.registry,
        )
        queue.set_function(queue_depth)
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
            registry=self.registry,
        )

    def track_shadow_queue(self, depth: Callable[[], float]) -> None:
        """Read the shadow queue's depth at each scrape (the scorer is built after the metrics)."""
        self._shadow_queue.set_function(depth)

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome=outcome).inc()
