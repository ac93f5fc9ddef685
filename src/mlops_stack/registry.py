"""The MLflow side: tracking set-up, aliases, the recorded gate decisions and rollback.

Aliases, never stages: ``champion`` is the version the predictor serves, ``challenger`` the latest
version the gate did not promote. Every change of champion writes on the new version which
version it replaced (``mlops.previous_champion``), so ``rollback`` walks that history back one
step without anyone needing to remember version numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops_stack.gate import GateDecision
from mlops_stack.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_TAG = "mlops.previous_champion"


class RegistryError(RuntimeError):
    """A registry operation a person asked for cannot be done; the message says why."""


def use_tracking(settings: Settings) -> None:
    """Point this process's MLflow (tracking and registry) at the configured store.

    ``models:/`` URIs are resolved through the process-wide registry URI, so every process
    that loads a model must call this (or ``configure_tracking``) first.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_tracking_uri)


def configure_tracking(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists.

    Returns the experiment id. Embedded tracking keeps artifacts under the data directory
    rather than MLflow's default ``./mlruns`` relative to wherever the command ran.
    """
    use_tracking(settings)
    experiment_id = ensure_experiment(settings, settings.experiment_name)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created with the configured artifact location if new."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=settings.resolved_artifact_location)


def client_for(settings: Settings) -> MlflowClient:
    """A client bound to the configured tracking and registry URIs."""
    uri = settings.resolved_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_of(mv: ModelVersion) -> str:
    """A version number as text: the SQL store hands back ints, the REST store strings."""
    return str(mv.version)


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    """A version by number, with a readable error when it does not exist."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"model '{name}' has no version {version}") from exc


def list_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """All versions of the model, newest first; empty when the model is not registered yet."""
    versions = client.search_model_versions(f"name = '{name}'")
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_decision(
    client: MlflowClient, name: str, version: str, decision: GateDecision, evaluated_on: str
) -> None:
    """Write the gate's decision on the version so that it explains itself later."""
    tags = {
        "gate.decision": "promoted" if decision.promote else "kept-as-challenger",
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        "gate.candidate_score": f"{decision.candidate_score:.6f}",
        "gate.compared_with": (
            f"v{decision.champion_version}" if decision.champion_version else "none"
        ),
        "gate.evaluation_data": evaluated_on,
        "gate.decided_at": _now(),
    }
    if decision.champion_score is not None:
        tags["gate.champion_score"] = f"{decision.champion_score:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def make_champion(client: MlflowClient, name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``, remembering the version it replaces for rollback.

    Returns the replaced version (None for the first champion). The version leaves
    ``challenger`` if it held it: one version, one role.
    """
    current = version_by_alias(client, name, CHAMPION)
    previous = version_of(current) if current is not None else None
    if previous == str(version):
        return previous
    if previous is not None:
        client.set_model_version_tag(name, version, PREVIOUS_TAG, previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None and version_of(challenger) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return previous


def make_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Give ``challenger`` to the newest version the gate did not promote."""
    client.set_registered_model_alias(name, CHALLENGER, version)


def promote(client: MlflowClient, name: str, version: str | int) -> str | None:
    """A person's explicit promotion: bypasses the gate, and is recorded as such."""
    target = get_version(client, name, version)
    number = version_of(target)
    previous = make_champion(client, name, number)
    client.set_model_version_tag(name, number, "gate.decision", "promoted-by-hand")
    client.set_model_version_tag(
        name, number, "gate.reason", f"promoted by hand over v{previous or 'none'}"
    )
    client.set_model_version_tag(name, number, "gate.decided_at", _now())
    return previous


@dataclass(frozen=True)
class Rollback:
    """The champion a rollback left (``from_version``) and the one it restored."""

    from_version: str
    to_version: str


def rollback(client: MlflowClient, name: str) -> Rollback:
    """Give ``champion`` back to the version it replaced last time; one step per call."""
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model '{name}' has no champion to roll back")
    previous = current.tags.get(PREVIOUS_TAG)
    if not previous:
        raise RegistryError(
            f"champion v{version_of(current)} replaced no earlier champion; nothing to roll back to"
        )
    left, restored = version_of(current), version_of(get_version(client, name, previous))
    client.set_registered_model_alias(name, CHAMPION, restored)
    client.set_model_version_tag(name, left, "mlops.rolled_back_at", _now())
    client.set_model_version_tag(name, restored, "mlops.restored_by_rollback_from", f"v{left}")
    return Rollback(from_version=left, to_version=restored)


KEY_METRICS = ("accuracy", "f1", "roc_auc")


@dataclass(frozen=True)
class VersionRow:
    """One line of ``mlops models``: what a person needs to pick or question a version."""

    version: str
    aliases: list[str]
    created_at: str
    candidate: str
    metrics: dict[str, float]
    decision: str
    reason: str


def describe_versions(client: MlflowClient, name: str) -> list[VersionRow]:
    """Every version, newest first, with aliases, holdout metrics and the gate's decision."""
    rows: list[VersionRow] = []
    versions = list_versions(client, name)
    if not versions:
        return rows
    # search results carry no aliases; the registered model has them all
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    for mv in versions:
        run = client.get_run(mv.run_id) if mv.run_id else None
        metrics = run.data.metrics if run else {}
        rows.append(
            VersionRow(
                version=version_of(mv),
                aliases=sorted(aliases.get(version_of(mv), [])),
                created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                candidate=run.data.tags.get("mlops.candidate", "") if run else "",
                metrics={k: metrics[k] for k in KEY_METRICS if k in metrics},
                decision=mv.tags.get("gate.decision", ""),
                reason=mv.tags.get("gate.reason", ""),
            )
        )
    return rows
