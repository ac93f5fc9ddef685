"""What the dashboard's buttons do: start a retrain (Prefect), promote the challenger and roll
back (MLflow).

Each goes through the same parts as the CLI and the worker, never around them: a retrain is a
flow run of the worker's ``retrain/retrain`` deployment (so it shows in Prefect's UI with its
logs), a promotion and a rollback are the registry's own ``promote`` and ``rollback`` (so the
registry records who replaced whom, and the predictors hear of it at once, exactly as after
``mlops promote`` / ``mlops rollback``). Whether a button may
act is decided here too, with the reason a disabled button shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from mlops_stack.names import RETRAIN_DEPLOYMENT
from mlops_stack.registry import Rollback
from mlops_stack.settings import Settings
from mlops_stack.stack import Stack


@dataclass(frozen=True)
class Permission:
    """May a button act; if not, the sentence the page shows next to the disabled button."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class StartedRun:
    """A flow run the dashboard created: what the page shows and a person looks up in Prefect."""

    id: str
    name: str
    state: str
    deployment: str


def actions_permission(settings: Settings) -> Permission:
    """The site-wide switch: a read-only dashboard shows the buttons, disabled, and says why."""
    if not settings.dashboard_actions_enabled:
        return Permission(
            False,
            "Actions are switched off for this dashboard (MLOPS_DASHBOARD_ACTIONS_ENABLED=false): "
            "ask an operator, or use `mlops retrain` / `mlops rollback` where you have access.",
        )
    return Permission(True)


def retrain_permission(settings: Settings) -> Permission:
    """A retrain needs the worker's deployment, so a Prefect server (not the embedded one)."""
    general = actions_permission(settings)
    if not general.allowed:
        return general
    if not settings.prefect_api_url:
        return Permission(
            False,
            "No Prefect server is configured (MLOPS_PREFECT_API_URL), so no worker serves the "
            "retrain deployment: run `mlops retrain` instead.",
        )
    return Permission(True)


def rollback_permission(settings: Settings, previous: str | None) -> Permission:
    """A rollback needs a champion that replaced an earlier one (the registry's record)."""
    general = actions_permission(settings)
    if not general.allowed:
        return general
    if previous is None:
        return Permission(
            False, "The champion replaced no earlier champion: there is nothing to roll back to."
        )
    return Permission(True)


def promote_permission(settings: Settings, challenger: str | None) -> Permission:
    """Promoting by hand needs a challenger to promote (the registry records it as such)."""
    general = actions_permission(settings)
    if not general.allowed:
        return general
    if challenger is None:
        return Permission(False, "There is no challenger to promote.")
    return Permission(True)


def promote(stack: Stack, version: str) -> str | None:
    """Make ``version`` champion by hand, as ``mlops promote`` does, and tell the predictors;
    returns the version it replaced."""
    return stack.registry.promote(version)


def start_retrain(stack: Stack, reason: str) -> StartedRun:
    """Create a flow run of ``retrain/retrain`` and return at once (the worker executes it).

    The run gets the retrain options of this dashboard's settings, like the deployment's own
    defaults, with the reason it was asked for.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from mlops_stack.flows.parameters import RetrainParameters

    params = RetrainParameters.from_settings(stack.settings, trigger_reason=reason)
    # sync-compatible: called outside an event loop it returns the run, not a coroutine
    run = cast(
        FlowRun,
        run_deployment(
            RETRAIN_DEPLOYMENT,
            parameters=params.as_run_parameters(),
            timeout=0,
            tags=["dashboard"],
        ),
    )
    state = run.state.name if run.state is not None else "unknown"
    return StartedRun(str(run.id), run.name, str(state), RETRAIN_DEPLOYMENT)


def run_link(settings: Settings, run: StartedRun) -> str | None:
    """The run's page in Prefect's UI, as the browser reaches it; None when not configured."""
    if not settings.dashboard_prefect_ui_url:
        return None
    return f"{settings.dashboard_prefect_ui_url.rstrip('/')}/runs/flow-run/{run.id}"


def roll_back(stack: Stack) -> Rollback:
    """Move ``champion`` back to the version it replaced, and tell the predictors."""
    return stack.registry.rollback()
