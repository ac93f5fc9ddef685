"""Prefect's flows and tasks, orchestrated when there is a Prefect API and plain calls when not.

Why: with no Prefect API configured, Prefect 3 starts a temporary server subprocess for every
process that runs a flow, on a random port, and stops it when the process ends. An embedded
``mlops train``, ``monitor`` or ``retrain`` paid that on every command (about 10 s to start it
and 7 s to stop it on two cores, measured in docs/architecture.md, "Flows without a Prefect
server") for run records nobody could see: the server was gone when the command returned.
Prefect has no setting that runs a flow without an API (``PREFECT_SERVER_ALLOW_EPHEMERAL_MODE
=false`` makes the call fail instead; ``flow.fn`` skips the flow run, but a task called outside
one still creates a client), so :func:`flow` and :func:`task` here build Prefect's own ``Flow``
and ``Task`` with one change: called while no API is configured, they call their function.

The function is the same either way. The flows' logic, MLflow logging, the gate and the
registry run the same code embedded and in the stack; only the bookkeeping differs. With an API
(``MLOPS_PREFECT_API_URL`` or Prefect's own ``PREFECT_API_URL``: the stack's worker, the
tests' Prefect server, a ``prefect server start`` of your own) every flow, task and log line is
a Prefect run, visible in its UI, and the deployments the worker serves are these same objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import prefect
from prefect.context import FlowRunContext, TaskRunContext
from prefect.settings import get_current_settings

P = ParamSpec("P")
R = TypeVar("R")

LOCAL_LOGGER = "mlops_stack.flows"
"""Where the flows log when they run without Prefect (Prefect's run loggers need a run)."""


def orchestrated() -> bool:
    """True when Prefect has an API to record runs in (an env var, a profile or a test's
    temporary settings); False embedded, where flows and tasks run as plain calls."""
    return bool(get_current_settings().api.url)


class Flow(prefect.Flow[P, R]):
    """A Prefect flow that is a plain function call when no Prefect API is configured."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[override]
        if orchestrated():
            return super().__call__(*args, **kwargs)
        logging.getLogger(LOCAL_LOGGER).info(
            "flow %s runs in this process without Prefect: no Prefect API is configured "
            "(MLOPS_PREFECT_API_URL)",
            self.name,
        )
        return self.fn(*args, **kwargs)


class Task(prefect.Task[P, R]):
    """A Prefect task that is a plain function call when no Prefect API is configured."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[override]
        if orchestrated():
            return super().__call__(*args, **kwargs)
        return self.fn(*args, **kwargs)


def flow(*, name: str, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``prefect.flow``'s decorator for :class:`Flow` (same options)."""

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, name=name, **options)

    return decorate


def task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``prefect.task``'s decorator for :class:`Task` (same options)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorate


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's logger of the current flow or task run (its lines are the run's logs in
    Prefect's UI); outside a run, when the flow runs as a plain call, the flows' own logger."""
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return logging.getLogger(LOCAL_LOGGER)
    return prefect.get_run_logger()
