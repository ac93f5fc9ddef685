"""The served model and its hot swap.

``ServedModel`` is everything one request needs, built once per version: the fitted pipeline,
the signature's feature fields and the request model built from them, and from the schema
logged with the model (``schema/schema.json``) its task and the categories training saw.
Scoring goes through the model compiled to ONNX when it converted and was verified against the
pipeline at load (``serving.compiled``), else through the pipeline; both answer the same.
``ModelHolder`` keeps the
current one behind a single reference: a request reads it once and uses that object to the end,
so a swap in the middle of a request changes nothing for it, and the next request sees the new
version. Loading happens on a background thread; the swap itself is one assignment.

The holder also keeps the ``challenger`` alias's version (``shadow``), which
``serving.shadow`` scores live rows with, off the request path. It moves on the same poll and
notice as the champion and is swapped the same way; it is loaded only when it can answer the
champion's rows (same task, the features it needs present with the same types), and nothing
about it (lookup, load, refusal) ever touches the champion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from mlops_stack import modelstore
from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema
from mlops_stack.logs import get_logger
from mlops_stack.names import Task
from mlops_stack.registry import Registry, task_of, version_of
from mlops_stack.serving import compiled as compiledmod
from mlops_stack.serving.compiled import CompiledModel, InferenceChoice
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
    compiled: CompiledModel | None = None
    inference: InferenceChoice = InferenceChoice("sklearn", "not compiled")

    def predict(self, rows: list[dict[str, Any]]) -> list[Answer]:
        """Prediction, class probabilities and unseen categories for validated rows.

        A regression model answers a float and no probabilities. A classifier's class is the
        argmax of its probabilities, which is how the scikit-learn classifiers we train
        implement ``predict``: one pass over the model, not two. The verified ONNX session
        (``compiled``) takes the rows as they are; the pipeline takes them as a DataFrame. One
        call scores all the rows: the micro-batcher hands it many at once.
        """
        unseen = self.unseen_categories(rows)
        if self.compiled is not None:
            scores = self.compiled.run(rows)
            if self.task is Task.REGRESSION:
                return [Answer(v, None, u) for v, u in zip(scores.tolist(), unseen, strict=True)]
            return self._classified(scores, unseen)
        frame = rows_to_frame(rows, self.fields)
        if self.task is Task.REGRESSION:
            values = np.asarray(self.pipeline.predict(frame), dtype=np.float64)
            return [Answer(v, None, u) for v, u in zip(values.tolist(), unseen, strict=True)]
        if not hasattr(self.pipeline, "predict_proba"):  # a classifier without probabilities
            classes = self.pipeline.predict(frame)
            return [Answer(_plain(c), None, u) for c, u in zip(classes, unseen, strict=True)]
        return self._classified(self.pipeline.predict_proba(frame), unseen)

    def _classified(self, proba: np.ndarray, unseen: list[list[UnseenCategory]]) -> list[Answer]:
        """Answers from a probability matrix: the argmax and ``tolist`` in numpy, per row only
        the answer itself."""
        winners = self._class_values[proba.argmax(axis=1)].tolist()
        labels = self._class_labels
        return [
            Answer(winner, dict(zip(labels, row, strict=True)), u)
            for winner, row, u in zip(winners, proba.tolist(), unseen, strict=True)
        ]

    @cached_property
    def _class_values(self) -> np.ndarray:
        """The classes as an array an argmax indexes (``tolist`` gives back Python values)."""
        return np.asarray(self.classes)

    @cached_property
    def _class_labels(self) -> list[str]:
        """The probabilities' keys: each class as text."""
        return [str(c) for c in self.classes]

    def unseen_categories(self, rows: list[dict[str, Any]]) -> list[list[UnseenCategory]]:
        """Per row, the categorical values training never saw: one set lookup per field.

        A missing value (null) is not unseen: the pipeline imputes it as in training.
        """
        if not self.category_checks:
            return [[] for _ in rows]
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


def load_version(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    max_batch_rows: int,
    inference_path: str,
    onnx_tolerance: float,
) -> ServedModel:
    """Load a registered version with its signature, schema and run metrics, and choose the
    path that scores it (``inference_path``: "auto" compiles and verifies, "sklearn" does not)."""
    uri = f"models:/{name}/{version}"
    info = mlflow.models.get_model_info(uri)
    fields = fields_from_signature(info.signature)
    pipeline = modelstore.load_pipeline(uri)
    mv = client.get_model_version(name, version)
    if mv.run_id is None:  # registered from a path, not a run: no metrics to report
        raise ValueError(f"version {version} of {name} was not registered from a run")
    run = client.get_run(mv.run_id)
    schema = load_schema(mv.run_id)
    task = task_of(mv, schema=schema, estimator=pipeline)
    features = build_features_model(fields)
    predict_request, batch_request = build_request_models(features, max_batch_rows)
    classes = list(getattr(pipeline, "classes_", [])) if task is Task.CLASSIFICATION else []
    compiled, inference = choose_inference(
        pipeline, fields, task, mv.run_id, inference_path=inference_path, tolerance=onnx_tolerance
    )
    log.info(
        "inference_path_chosen",
        model=name,
        version=str(version),
        path=inference.path,
        reason=inference.reason,
        verified_on=inference.verified_on,
        rows=inference.verified_rows,
        max_abs_diff=inference.max_abs_diff,
        tolerance=inference.tolerance,
        ms=round(inference.seconds * 1000, 1),
    )
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
        compiled=compiled,
        inference=inference,
    )


def choose_inference(
    pipeline: Pipeline,
    fields: list[FeatureField],
    task: Task,
    run_id: str,
    *,
    inference_path: str,
    tolerance: float,
) -> tuple[CompiledModel | None, InferenceChoice]:
    """The verified ONNX session to score with (None: the pipeline) and why.

    Verified on the holdout sample logged with the model; a model logged before those were is
    verified on its reference sample (training rows: the check still compares both paths row by
    row, on rows the pipeline was fitted on). A sample that cannot be read leaves the pipeline.
    """
    if inference_path == "sklearn":
        return None, InferenceChoice("sklearn", "MLOPS_INFERENCE_PATH=sklearn")
    sample: pd.DataFrame | None = None
    on: compiledmod.VerifiedOn = "holdout"
    try:
        sample = modelstore.load_holdout(run_id)
        if sample is None:
            sample, on = modelstore.load_reference(run_id), "reference sample"
    except (MlflowException, OSError) as exc:
        log.warning("verification_sample_missing", run_id=run_id, error=str(exc)[:200])
    return compiledmod.choose(
        pipeline, fields, task, sample=sample, verified_on=on, tolerance=tolerance
    )


def shadow_mismatch(champion: ServedModel, challenger: ServedModel) -> str | None:
    """Why ``challenger`` cannot answer the rows the champion validated; None when it can.

    Shadow rows are the champion's validated rows: the challenger must predict the same kind of
    thing and find every feature it takes in them, typed as it expects (a row the champion
    accepted with an int where the challenger wants a string would fail or, worse, be cast).
    """
    if challenger.task is not champion.task:
        return f"it predicts {challenger.task}, the champion {champion.task}"
    given = {f.name: f.dtype for f in champion.fields}
    missing = [f.name for f in challenger.fields if f.name not in given]
    if missing:
        return f"it takes features the champion's rows lack: {', '.join(missing[:5])}"
    retyped = [f.name for f in challenger.fields if given[f.name] != f.dtype]
    if retyped:
        return f"features typed differently from the champion's: {', '.join(retyped[:5])}"
    return None


@dataclass
class RegistryStatus:
    """Whether the last look at the registry worked, for /ready and the logs."""

    reachable: bool = True
    error: str | None = None
    since: str | None = None
    last_checked: str | None = None


@dataclass
class ModelHolder:
    """The current model, swapped atomically when the registry alias moves, and the challenger
    scored in shadow (``shadow``; None when there is none, or shadow scoring is off)."""

    registry: Registry
    settings: Settings
    current: ServedModel | None = None
    shadow: ServedModel | None = None
    registry_status: RegistryStatus = field(default_factory=RegistryStatus)
    on_reload: Callable[[str], None] = lambda outcome: None
    _refused: tuple[str, str] | None = None  # (challenger, champion) judged unfit: not reloaded
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def refresh(self) -> bool:
        """Look up the aliases and load what moved; True when a new champion was swapped in.

        Never raises: an unreachable registry or a version that fails to load leaves the
        current model serving and is recorded for /ready and the logs. The challenger is looked
        at after the champion, so nothing about it can delay or prevent a champion swap.
        """
        with self._lock:  # one refresh at a time (poll thread, notice thread, start-up)
            try:
                mv = self.registry.champion()  # the served alias (MLOPS_MODEL_ALIAS)
            except Exception as exc:  # network, server or database errors alike
                self._registry_failed(exc)
                return False
            self._registry_ok()
            swapped = mv is not None and self._take_champion(version_of(mv))
            self._refresh_shadow()
            return swapped

    def _load(self, version: str) -> ServedModel:
        return load_version(
            self.registry.client,
            self.registry.model_name,
            version,
            max_batch_rows=self.settings.max_batch_rows,
            inference_path=self.settings.inference_path,
            onnx_tolerance=self.settings.onnx_tolerance,
        )

    def _take_champion(self, version: str) -> bool:
        """Serve ``version`` unless it already is; True when swapped in.

        A promoted challenger is already loaded (as ``shadow``): that object is served as is,
        so a promotion swaps at once, without a load in between.
        """
        name = self.registry.model_name
        if self.current is not None and self.current.version == version:
            return False
        loaded = self.shadow if self.shadow is not None and self.shadow.version == version else None
        if loaded is None:
            try:
                loaded = self._load(version)
            except Exception as exc:
                self.on_reload("failed")
                log.error("model_load_failed", model=name, version=version, error=str(exc))
                return False
        previous = self.current.version if self.current else None
        if loaded is self.shadow:
            # stop shadowing it first: between the swap and the shadow's own refresh, the new
            # champion would otherwise also score its own rows in shadow (and /model say so)
            self._set_shadow(None, "promoted to champion")
        self.current = loaded  # the swap: one reference assignment
        self.on_reload("ok")
        log.info("model_swapped", model=name, version=version, previous=previous)
        return True

    def _refresh_shadow(self) -> None:
        """Follow the ``challenger`` alias: load its version, or stop scoring the one loaded.

        Never raises and never touches ``current``. A failed lookup keeps the shadow as it is
        (the registry hiccuped; the alias has not been seen to move); a challenger that fails to
        load or cannot answer the champion's rows leaves no shadow, with the reason in the log.
        """
        champion = self.current
        if not self.settings.shadow_enabled or champion is None:
            self._set_shadow(None, "shadow scoring is off" if champion else "no champion")
            return
        try:
            mv = self.registry.challenger()
        except Exception as exc:
            log.warning(
                "challenger_lookup_failed", error=str(exc)[:300], shadow=self.shadow_version
            )
            return
        version = version_of(mv) if mv is not None else None
        if version is None or version == champion.version:
            self._set_shadow(None, "no challenger" if version is None else "it is the champion")
            return
        if self._refused == (version, champion.version):
            return  # judged unfit for this champion already: not loaded again every poll
        loaded = self.shadow if self.shadow is not None and self.shadow.version == version else None
        if loaded is None:
            try:
                loaded = self._load(version)
            except Exception as exc:
                log.error("challenger_load_failed", version=version, error=str(exc)[:300])
                self._set_shadow(None, f"v{version} failed to load")
                return
        reason = shadow_mismatch(champion, loaded)
        if reason is not None:
            self._refused = (version, champion.version)
            log.warning("challenger_not_shadowed", version=version, reason=reason)
            self._set_shadow(None, reason)
            return
        self._set_shadow(loaded, "")

    def _set_shadow(self, model: ServedModel | None, why: str) -> None:
        previous = self.shadow
        if previous is model:
            return
        self.shadow = model  # the swap: one reference assignment, as for the champion
        if model is not None:
            log.info(
                "shadow_loaded",
                version=model.version,
                champion=self.version,
                previous=previous.version if previous else None,
            )
        elif previous is not None:
            log.info("shadow_stopped", version=previous.version, reason=why)

    @property
    def shadow_version(self) -> str | None:
        return self.shadow.version if self.shadow else None

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
