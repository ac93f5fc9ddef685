"""The served model and its hot swap.

``ServedModel`` is everything one request needs, built once per version: the fitted pipeline,
the signature's feature fields and the request model built from them, and from the schema
logged with the model (``schema/schema.json``) its task and the categories training saw.
``ModelHolder`` keeps the
current one behind a single reference: a request reads it once and uses that object to the end,
so a swap in the middle of a request changes nothing for it, and the next request sees the new
version. Loading happens on a background thread; the swap itself is one assignment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline

from mlops_stack import modelstore
from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema
from mlops_stack.logs import get_logger
from mlops_stack.names import Task
from mlops_stack.registry import Registry, tagged_task, version_of
from mlops_stack.serving.schema import (
    FeatureField,
    build_features_model,
    build_request_models,
    fields_from_signature,
    rows_to_frame,
)
from mlops_stack.settings import Settings

log = get_logger(__name__)


class UnseenCategory(NamedTuple):
    """A value of a categorical feature that training never saw."""

    feature: str
    value: str

    @property
    def warning(self) -> str:
        """The sentence a client reads in the answer's ``warnings``."""
        return (
            f"{self.feature}: {self.value!r} was never seen in training; "
            "the model treats it as unknown"
        )


class Answer(NamedTuple):
    """One row's answer: the prediction, the class probabilities (None for a regression model or
    a classifier without them) and the warnings about its input (unseen categories)."""

    prediction: Any
    probabilities: dict[str, float] | None
    unseen: list[UnseenCategory]


@dataclass(frozen=True)
class CategoryCheck:
    """The categories training saw of one categorical feature, as a set for one lookup a row."""

    feature: str
    known: frozenset[str]


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version, ready to answer."""

    name: str
    version: str
    run_id: str
    pipeline: Pipeline
    task: Task
    fields: list[FeatureField]
    features_model: type[BaseModel]
    predict_request: type[BaseModel]
    batch_request: type[BaseModel]
    classes: list[Any]
    category_checks: tuple[CategoryCheck, ...]
    metrics: dict[str, float]
    trained_at: str
    loaded_at: str
    schema: DatasetSchema | None = None

    def predict(self, rows: list[dict[str, Any]]) -> list[Answer]:
        """Prediction, class probabilities and unseen categories for validated rows.

        A regression model answers a float and no probabilities. A classifier's class is the
        argmax of ``predict_proba``, which is how the scikit-learn classifiers we train
        implement ``predict``: one pass over the model, not two.
        """
        frame = rows_to_frame(rows, self.fields)
        unseen = self.unseen_categories(rows)
        if self.task is Task.REGRESSION:
            values = self.pipeline.predict(frame)
            return [Answer(float(v), None, u) for v, u in zip(values, unseen, strict=True)]
        if not hasattr(self.pipeline, "predict_proba"):  # a classifier without probabilities
            classes = self.pipeline.predict(frame)
            return [Answer(_plain(c), None, u) for c, u in zip(classes, unseen, strict=True)]
        proba = self.pipeline.predict_proba(frame)
        labels = [str(c) for c in self.classes]
        winners = np.asarray(self.classes)[proba.argmax(axis=1)]
        return [
            Answer(_plain(winner), dict(zip(labels, map(float, row), strict=True)), u)
            for winner, row, u in zip(winners, proba, unseen, strict=True)
        ]

    def unseen_categories(self, rows: list[dict[str, Any]]) -> list[list[UnseenCategory]]:
        """Per row, the categorical values training never saw: one set lookup per field.

        A missing value (null) is not unseen: the pipeline imputes it as in training.
        """
        found: list[list[UnseenCategory]] = []
        for row in rows:
            unseen = []
            for check in self.category_checks:
                value = row[check.feature]
                if value is not None and (text := str(value)) not in check.known:
                    unseen.append(UnseenCategory(check.feature, text))
            found.append(unseen)
        return found


def _plain(value: Any) -> Any:
    """numpy scalars to Python values, so they serialise to JSON as themselves."""
    return value.item() if isinstance(value, np.generic) else value


def category_checks(
    schema: DatasetSchema | None, fields: list[FeatureField]
) -> tuple[CategoryCheck, ...]:
    """The categorical features whose every training category is known.

    A feature whose stored list reached ``MAX_STORED_CATEGORIES`` was cut short when the schema
    was saved: a value missing from it may well have been seen, so it is not checked.
    """
    if schema is None:
        return ()
    inputs = {f.name for f in fields}
    return tuple(
        CategoryCheck(spec.name, frozenset(spec.categories))
        for spec in schema.features
        if spec.kind == "categorical"
        and spec.categories is not None
        and len(spec.categories) < MAX_STORED_CATEGORIES
        and spec.name in inputs
    )


def load_schema(run_id: str) -> DatasetSchema | None:
    """The schema logged with the model, or None for a model logged without one.

    A schema that exists but does not parse fails the load (the current version keeps
    serving); a missing one only loses the unseen-category checks.
    """
    try:
        return modelstore.load_schema(run_id)
    except (MlflowException, OSError) as exc:
        log.warning("model_schema_missing", run_id=run_id, error=str(exc)[:200])
        return None


def model_task(schema: DatasetSchema | None, tags: dict[str, str], pipeline: Pipeline) -> Task:
    """The schema's task; without a schema, the version's tag, else what the estimator is.

    A schema saved before tasks existed loads as classification, which is what those models are.
    """
    if schema is not None:
        return schema.task
    tagged = tagged_task(tags)
    if tagged is not None:
        return tagged
    return Task.CLASSIFICATION if is_classifier(pipeline) else Task.REGRESSION


def load_version(
    client: MlflowClient, name: str, version: str, *, max_batch_rows: int
) -> ServedModel:
    """Load a registered version with its signature, schema and run metrics."""
    uri = f"models:/{name}/{version}"
    info = mlflow.models.get_model_info(uri)
    fields = fields_from_signature(info.signature)
    pipeline = modelstore.load_pipeline(uri)
    mv = client.get_model_version(name, version)
    if mv.run_id is None:  # registered from a path, not a run: no metrics to report
        raise ValueError(f"version {version} of {name} was not registered from a run")
    run = client.get_run(mv.run_id)
    schema = load_schema(mv.run_id)
    task = model_task(schema, dict(mv.tags or {}), pipeline)
    features = build_features_model(fields)
    predict_request, batch_request = build_request_models(features, max_batch_rows)
    classes = list(getattr(pipeline, "classes_", [])) if task is Task.CLASSIFICATION else []
    return ServedModel(
        name=name,
        version=str(version),
        run_id=mv.run_id,
        pipeline=pipeline,
        task=task,
        fields=fields,
        features_model=features,
        predict_request=predict_request,
        batch_request=batch_request,
        classes=classes,
        category_checks=category_checks(schema, fields),
        metrics=dict(run.data.metrics),
        trained_at=datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        schema=schema,
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
