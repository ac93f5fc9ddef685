"""The MLflow side: tracking set-up, aliases, the recorded gate decisions and rollback.

Aliases, never stages: ``champion`` is the version the predictor serves, ``challenger`` the latest
version the gate did not promote. Every change of champion writes on the new version which
version it replaced (``mlops.previous_champion``), so ``rollback`` walks that history back one
step without anyone needing to remember version numbers.

:class:`Registry` is bound to one client and one model name, and every operation that moves the
champion (the gate's promotion, ``promote``, ``rollback``) publishes the model-change notice
itself: the CLI, the dashboard and the flows cannot forget it, so predictors switch within a
second whichever of them acted.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops_stack.gate import GateDecision
from mlops_stack.names import Alias, GateOutcome, Task, quality_metrics
from mlops_stack.notifier import Notifier
from mlops_stack.settings import Settings

if TYPE_CHECKING:
    from mlops_stack.data import DatasetSchema

PREVIOUS_TAG = "mlops.previous_champion"
ROLLED_BACK_AT_TAG = "mlops.rolled_back_at"
RESTORED_FROM_TAG = "mlops.restored_by_rollback_from"
TASK_TAG = "mlops.task"
"""A version's task (``names.Task``); versions registered before tasks existed have none:
:func:`task_of` then reads their schema, else calls them classification models."""
_MISSING = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


class RegistryError(RuntimeError):
    """A registry operation a person asked for cannot be done; the message says why."""


def use_tracking(settings: Settings) -> None:
    """Point this process's MLflow (fluent API, ``models:/`` URIs) at the configured store.

    MLflow keeps the tracking and registry URIs process-wide; the composition root
    (:class:`mlops_stack.stack.Stack`) calls this once per process. A notebook calls it too.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_tracking_uri)


def version_of(mv: ModelVersion) -> str:
    """A version number as text: the SQL store hands back ints, the REST store strings."""
    return str(mv.version)


def tagged_task(tags: Mapping[str, str]) -> Task | None:
    """The task a version's ``mlops.task`` tag names; None when it has none (or not a task)."""
    tagged = tags.get(TASK_TAG)
    return Task(tagged) if tagged in set(Task) else None


def task_of(
    mv: ModelVersion, *, schema: DatasetSchema | None = None, estimator: Any | None = None
) -> Task:
    """What a registered version predicts: the one answer the registry, the predictor, the
    gate, the monitor and the dashboard all use, found in this order:

    1. the version's ``mlops.task`` tag (what the train flow knew when it registered it);
    2. else the task in its run's schema artifact (``schema``: the run's schema when the caller
       has read it already, as the predictor has; else it is read here, once per run);
    3. else, when a loaded estimator is at hand, what scikit-learn says it is (a model logged
       by hand, without a schema);
    4. else classification: versions registered before tasks existed are classifiers.

    A store that cannot be read (not a missing schema) raises rather than guess.
    """
    tagged = tagged_task(mv.tags or {})
    if tagged is not None:
        return tagged
    logged = schema.task if schema is not None else logged_task(mv.run_id)
    if logged is not None:
        return logged
    if estimator is not None:
        from mlops_stack.training import estimator_task  # scikit-learn: only when asked

        return estimator_task(estimator)
    return Task.CLASSIFICATION


@functools.lru_cache(maxsize=256)
def logged_task(run_id: str | None) -> Task | None:
    """The task in a run's schema artifact; None when the run logged none (or one that does not
    parse). Cached: a logged artifact never changes, and the dashboard asks on every render. A
    read that fails otherwise (the store unreachable) raises, so it is not cached and the next
    call tries again. A schema saved before tasks existed reads as classification."""
    if not run_id:
        return None
    from mlops_stack.modelstore import load_schema  # MLflow artifacts: only when needed

    try:
        return load_schema(run_id).task
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    except ValueError:  # a schema that does not parse (pydantic's error is a ValueError)
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Rollback:
    """The champion a rollback left (``from_version``) and the one it restored."""

    from_version: str
    to_version: str


@dataclass(frozen=True)
class VersionRow:
    """One line of ``mlops models``: what a person needs to pick or question a version."""

    version: str
    aliases: list[str]
    created_at: str
    candidate: str
    metrics: dict[str, float]  # the task's quality metrics (names.quality_metrics), in order
    decision: str
    reason: str
    task: str = Task.CLASSIFICATION


@dataclass(frozen=True)
class ChampionInfo:
    """The champion and since when it serves: what the gate or a rollback recorded."""

    version: str
    since: str | None  # ISO time; None when nothing recorded it
    how: str  # "promoted by the gate", "promoted by hand", "restored from v3"
    previous: str | None  # the version a rollback would restore
    task: str = Task.CLASSIFICATION
    metrics: dict[str, float] = field(default_factory=dict)  # holdout quality, task's metrics


class Registry:
    """One registered model in MLflow's registry, and the experiments its runs go to."""

    def __init__(self, settings: Settings, notifier: Notifier) -> None:
        uri = settings.resolved_tracking_uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.model_name = settings.model_name
        self.served_alias = settings.model_alias
        self.notifier = notifier
        self._artifact_location = settings.resolved_artifact_location

    # --- experiments -----------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created with the configured artifact location if new.

        Embedded tracking keeps artifacts under the data directory rather than MLflow's default
        ``./mlruns`` relative to wherever the command ran. Only writers call this: reading the
        registry never creates an experiment.
        """
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=self._artifact_location))

    def use_experiment(self, name: str) -> str:
        """Make ``name`` the fluent API's active experiment (created if new); returns its id."""
        experiment_id = self.ensure_experiment(name)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    # --- reading ---------------------------------------------------------------------------
    def by_alias(self, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None when the alias (or the model) does not exist."""
        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                return None
            raise

    def champion(self) -> ModelVersion | None:
        """The version the predictor serves (``MLOPS_MODEL_ALIAS``, ``champion`` by default)."""
        return self.by_alias(self.served_alias)

    def challenger(self) -> ModelVersion | None:
        return self.by_alias(Alias.CHALLENGER)

    def version(self, number: str | int) -> ModelVersion:
        """A version by number, with a readable error when it does not exist."""
        try:
            return self.client.get_model_version(self.model_name, str(number))
        except MlflowException as exc:
            raise RegistryError(f"model '{self.model_name}' has no version {number}") from exc

    def versions(self) -> list[ModelVersion]:
        """All versions of the model, newest first; empty when the model is not registered yet."""
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def artifact_text(self, artifact_uri: str) -> str:
        """A logged artifact's text (a monitor run's HTML report), from this registry's store."""
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, tracking_uri=self.client.tracking_uri
        )
        return Path(path).read_text()

    def run_metrics(self, mv: ModelVersion) -> dict[str, float]:
        """The holdout metrics training logged with a version's run."""
        return dict(self.client.get_run(mv.run_id).data.metrics) if mv.run_id else {}

    def describe(self) -> list[VersionRow]:
        """Every version, newest first, with aliases, holdout metrics and the gate's decision."""
        versions = self.versions()
        if not versions:
            return []
        # search results carry no aliases; the registered model has them all
        aliases: dict[str, list[str]] = {}
        for alias, number in self.client.get_registered_model(self.model_name).aliases.items():
            aliases.setdefault(str(number), []).append(alias)
        rows = []
        for mv in versions:
            run = self.client.get_run(mv.run_id) if mv.run_id else None
            metrics = run.data.metrics if run else {}
            task = task_of(mv)
            created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
            rows.append(
                VersionRow(
                    version=version_of(mv),
                    aliases=sorted(aliases.get(version_of(mv), [])),
                    created_at=created.isoformat(timespec="seconds"),
                    candidate=run.data.tags.get("mlops.candidate", "") if run else "",
                    metrics={k: metrics[k] for k in quality_metrics(task) if k in metrics},
                    decision=mv.tags.get("gate.decision", ""),
                    reason=mv.tags.get("gate.reason", ""),
                    task=str(task),
                )
            )
        return rows

    def champion_info(self) -> ChampionInfo | None:
        """The served version, and when and how it got the alias (its tags say)."""
        mv = self.champion()
        if mv is None:
            return None
        tags = mv.tags
        restored_from = tags.get(RESTORED_FROM_TAG)
        since, how = tags.get("gate.decided_at"), "promoted by the gate"
        if tags.get("gate.decision") == GateOutcome.PROMOTED_BY_HAND:
            how = "promoted by hand"
        if restored_from:  # a rollback stamped the version it left: when this one returned
            left = self.version(restored_from.lstrip("v"))
            since, how = left.tags.get(ROLLED_BACK_AT_TAG, since), f"restored from {restored_from}"
        task = task_of(mv)
        metrics = self.run_metrics(mv)
        return ChampionInfo(
            version_of(mv),
            since,
            how,
            tags.get(PREVIOUS_TAG) or None,
            task=str(task),
            metrics={k: metrics[k] for k in quality_metrics(task) if k in metrics},
        )

    # --- the gate's record -----------------------------------------------------------------
    def register(self, model_uri: str, task: Task | str | None = None) -> str:
        """Register a logged model as a new version of this model, tagged with its task
        (``mlops.task``: what ``mlops models`` and the dashboard read); its number.

        ``task`` None takes it from the schema logged with the model. A model logged without
        one (by hand, in a notebook), or whose schema cannot be read now, gets no tag rather
        than a guess: readers then follow :func:`task_of` (the predictor asks scikit-learn
        whether it is a classifier).
        """
        if task is not None:
            tags = {TASK_TAG: str(Task(task))}
            return str(mlflow.register_model(model_uri, self.model_name, tags=tags).version)
        mv = mlflow.register_model(model_uri, self.model_name)
        try:
            logged = logged_task(mv.run_id)
        except (MlflowException, OSError):
            logged = None
        if logged is not None:
            self._tag(version_of(mv), {TASK_TAG: str(logged)})
        return version_of(mv)

    def record_decision(self, version: str, decision: GateDecision, evaluated_on: str) -> None:
        """Write the gate's decision on the version so that it explains itself later."""
        outcome = GateOutcome.PROMOTED if decision.promote else GateOutcome.KEPT
        tags = {
            "gate.decision": str(outcome),
            "gate.reason": decision.reason,
            "gate.metric": decision.metric,
            "gate.compared_with": (
                f"v{decision.champion_version}" if decision.champion_version else "none"
            ),
            "gate.evaluation_data": evaluated_on,
            "gate.decided_at": _now(),
        }
        # a score undefined on the data (metrics.py) is left out; the reason says why
        if decision.candidate_score is not None:
            tags["gate.candidate_score"] = f"{decision.candidate_score:.6f}"
        if decision.champion_score is not None:
            tags["gate.champion_score"] = f"{decision.champion_score:.6f}"
        self._tag(version, tags)

    # --- moving aliases --------------------------------------------------------------------
    def make_champion(self, version: str) -> str | None:
        """Move ``champion`` to ``version``, remembering the version it replaces, and announce it.

        Returns the replaced version (None for the first champion). The version leaves
        ``challenger`` if it held it: one version, one role.
        """
        current = self.by_alias(Alias.CHAMPION)
        previous = version_of(current) if current is not None else None
        if previous == str(version):
            return previous
        if previous is not None:
            self._tag(version, {PREVIOUS_TAG: previous})
        self.client.set_registered_model_alias(self.model_name, Alias.CHAMPION, version)
        challenger = self.challenger()
        if challenger is not None and version_of(challenger) == str(version):
            self.client.delete_registered_model_alias(self.model_name, Alias.CHALLENGER)
        self.notifier.model_changed(str(version))
        return previous

    def make_challenger(self, version: str) -> None:
        """Give ``challenger`` to the newest version the gate did not promote, and announce it:
        the predictors start scoring it in shadow now, not at their next poll."""
        self.client.set_registered_model_alias(self.model_name, Alias.CHALLENGER, version)
        self.notifier.model_changed(str(version))

    def promote(self, version: str | int) -> str | None:
        """A person's explicit promotion: bypasses the gate, and is recorded as such."""
        number = version_of(self.version(version))
        previous = self.make_champion(number)
        self._tag(
            number,
            {
                "gate.decision": str(GateOutcome.PROMOTED_BY_HAND),
                "gate.reason": f"promoted by hand over v{previous or 'none'}",
                "gate.decided_at": _now(),
            },
        )
        return previous

    def rollback(self) -> Rollback:
        """Give ``champion`` back to the version it replaced last time; one step per call."""
        current = self.by_alias(Alias.CHAMPION)
        if current is None:
            raise RegistryError(f"model '{self.model_name}' has no champion to roll back")
        previous = current.tags.get(PREVIOUS_TAG)
        if not previous:
            raise RegistryError(
                f"champion v{version_of(current)} replaced no earlier champion; "
                "nothing to roll back to"
            )
        left, restored = version_of(current), version_of(self.version(previous))
        self.client.set_registered_model_alias(self.model_name, Alias.CHAMPION, restored)
        self._tag(left, {ROLLED_BACK_AT_TAG: _now()})
        self._tag(restored, {RESTORED_FROM_TAG: f"v{left}"})
        self.notifier.model_changed(restored)
        return Rollback(from_version=left, to_version=restored)

    def _tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)
