"""The served model and its hot swap.

``ServedModel`` is everything one request needs, built once per version: the fitted pipeline,
the signature's feature fields and the request model built from them. ``ModelHolder`` keeps the
current one behind a single reference: a request reads it once and uses that object to the end,
so a swap in the middle of a request changes nothing for it, and the next request sees the new
version. Loading happens on a background thread; the swap itself is one assignment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from mlops_stack import modelstore
from mlops_stack.logs import get_logger
from mlops_stack.registry import Registry, version_of
from mlops_stack.serving.schema import (
    FeatureField,
    build_features_model,
    build_request_models,
    fields_from_signature,
    rows_to_frame,
)
from mlops_stack.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version, ready to answer."""

    name: str
    version: str
    run_id: str
    pipeline: Pipeline
    fields: list[FeatureField]
    features_model: type[BaseModel]
    predict_request: type[BaseModel]
    batch_request: type[BaseModel]
    classes: list[Any]
    metrics: dict[str, float]
    trained_at: str
    loaded_at: str

    def predict(self, rows: list[dict[str, Any]]) -> list[tuple[Any, dict[str, float] | None]]:
        """Prediction and class probabilities for validated rows of raw features.

        The class is the argmax of ``predict_proba``, which is how the scikit-learn
        classifiers we train implement ``predict``: one pass over the model, not two.
        """
        frame = rows_to_frame(rows, self.fields)
        if not hasattr(self.pipeline, "predict_proba"):
            return [(_plain(p), None) for p in self.pipeline.predict(frame)]
        proba = self.pipeline.predict_proba(frame)
        labels = [str(c) for c in self.classes]
        winners = np.asarray(self.classes)[proba.argmax(axis=1)]
        return [
            (_plain(winner), dict(zip(labels, map(float, row), strict=True)))
            for winner, row in zip(winners, proba, strict=True)
        ]


def _plain(value: Any) -> Any:
    """numpy scalars to Python values, so they serialise to JSON as themselves."""
    return value.item() if isinstance(value, np.generic) else value


def load_version(
    client: MlflowClient, name: str, version: str, *, max_batch_rows: int
) -> ServedModel:
    """Load a registered version with its signature and run metrics."""
    uri = f"models:/{name}/{version}"
    info = mlflow.models.get_model_info(uri)
    fields = fields_from_signature(info.signature)
    pipeline = modelstore.load_pipeline(uri)
    mv = client.get_model_version(name, version)
    if mv.run_id is None:  # registered from a path, not a run: no metrics to report
        raise ValueError(f"version {version} of {name} was not registered from a run")
    run = client.get_run(mv.run_id)
    features = build_features_model(fields)
    predict_request, batch_request = build_request_models(features, max_batch_rows)
    return ServedModel(
        name=name,
        version=str(version),
        run_id=mv.run_id,
        pipeline=pipeline,
        fields=fields,
        features_model=features,
        predict_request=predict_request,
        batch_request=batch_request,
        classes=list(getattr(pipeline, "classes_", [])),
        metrics=dict(run.data.metrics),
        trained_at=datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@dataclass
class RegistryStatus:
    """Whether the last look at the registry worked, for /ready and the logs."""

    reachable: bool = True
    error: str | None = None
    since: str | None = None
    last_checked: str | None = None


@dataclass
class ModelHolder:
    """The current model, swapped atomically when the registry alias moves."""

    registry: Registry
    settings: Settings
    current: ServedModel | None = None
    registry_status: RegistryStatus = field(default_factory=RegistryStatus)
    on_reload: Callable[[str], None] = lambda outcome: None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def refresh(self) -> bool:
        """Look up the alias and load it if it moved; True when a new version was swapped in.

        Never raises: an unreachable registry or a version that fails to load leaves the
        current model serving and is recorded for /ready and the logs.
        """
        with self._lock:  # one refresh at a time (poll thread, notice thread, start-up)
            name = self.registry.model_name
            try:
                mv = self.registry.champion()  # the served alias (MLOPS_MODEL_ALIAS)
            except Exception as exc:  # network, server or database errors alike
                self._registry_failed(exc)
                return False
            self._registry_ok()
            if mv is None:
                return False
            version = version_of(mv)
            if self.current is not None and self.current.version == version:
                return False
            try:
                loaded = load_version(
                    self.registry.client, name, version, max_batch_rows=self.settings.max_batch_rows
                )
            except Exception as exc:
                self.on_reload("failed")
                log.error("model_load_failed", model=name, version=version, error=str(exc))
                return False
            previous = self.current.version if self.current else None
            self.current = loaded  # the swap: one reference assignment
            self.on_reload("ok")
            log.info("model_swapped", model=name, version=version, previous=previous)
            return True

    def _registry_failed(self, exc: Exception) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        status = self.registry_status
        if status.reachable:
            log.warning("registry_unreachable", error=str(exc)[:300], serving=self.version)
            status.since = now
        status.reachable, status.error, status.last_checked = False, str(exc)[:300], now

    def _registry_ok(self) -> None:
        status = self.registry_status
        if not status.reachable:
            log.info("registry_reachable_again", down_since=status.since)
        status.reachable, status.error, status.since = True, None, None
        status.last_checked = datetime.now(UTC).isoformat(timespec="seconds")

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    def notify(self) -> None:
        """Ask the poll loop to look now (a Redis notice arrived)."""
        self._wake.set()

    def start(self) -> None:
        """Start the poll loop and, when Redis is configured, the notice listener."""
        self._stop.clear()
        self._spawn(self._poll_loop, "model-poll")
        if self.settings.redis_url:
            self._spawn(self._listen_loop, "model-notices")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.reload_poll_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()

    def _listen_loop(self) -> None:
        """Wake the poll loop on every notice; reconnect with a pause if Redis goes away."""
        import redis

        url = self.settings.redis_url
        while url and not self._stop.is_set():
            try:
                client = redis.Redis.from_url(url, socket_timeout=5)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.settings.model_events_channel)
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0):
                        self.notify()
            except Exception as exc:  # redis down: polling still covers us
                log.warning("model_notices_unavailable", error=str(exc)[:200])
                self._stop.wait(2.0)
