"""The composition root: one :class:`Stack` per process, built from the settings.

Every entry point (a CLI command, the worker, a flow run, the predictor, the dashboard, the demo)
builds the stack's parts here and nowhere else: the registry (bound to its MLflow client and
model name, announcing every change of champion), the monitoring database (one connection pool)
with the stores its consumers query it through, and the notifier (Redis notices and webhooks).
The parts do not build each other, so a newcomer finds in this file what a process is made of,
and a test builds the same thing from settings of its own.

A flow finds the stack of its process with :func:`current_stack`: the one an entry point
installed (the CLI, the demo, a test), or else one built from the environment (a flow run that
the worker started in a subprocess of its own).
"""

from __future__ import annotations

import threading
from functools import cached_property
from types import TracebackType

from mlops_stack.monitoring_db import (
    DashboardReads,
    Database,
    MonitorStore,
    PredictionStore,
    Upkeep,
)
from mlops_stack.notifier import Notifier
from mlops_stack.registry import Registry, use_tracking
from mlops_stack.settings import Settings, get_settings


class Stack:
    """Settings and the long-lived parts built from them, each made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.prepare_environment()

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier.from_settings(self.settings)

    @cached_property
    def registry(self) -> Registry:
        """The registry; also points this process's MLflow (fluent API, ``models:/``) at it."""
        use_tracking(self.settings)
        return Registry(self.settings, self.notifier)

    @cached_property
    def monitoring_db(self) -> Database:
        """The monitoring database: one connection pool for the process."""
        return Database(self.settings.resolved_monitoring_db_url)

    # The monitoring database's stores, one per consumer; each holds nothing but the database.
    @cached_property
    def predictions(self) -> PredictionStore:
        """Logged prediction rows and labels: the log writers and ``/feedback``."""
        return PredictionStore(self.monitoring_db)

    @cached_property
    def monitor_store(self) -> MonitorStore:
        """The monitor's window, shadow pairs, runs and alerts."""
        return MonitorStore(self.monitoring_db)

    @cached_property
    def dashboard_reads(self) -> DashboardReads:
        """What the dashboard's pages read."""
        return DashboardReads(self.monitoring_db)

    @cached_property
    def upkeep(self) -> Upkeep:
        """Retention deletes and the workers' advisory locks."""
        return Upkeep(self.monitoring_db)

    def close(self) -> None:
        """Release what holds connections (the database's pool); the stack can be rebuilt."""
        if "monitoring_db" in self.__dict__:
            self.monitoring_db.dispose()
        for part in ("monitoring_db", "predictions", "monitor_store", "dashboard_reads", "upkeep"):
            self.__dict__.pop(part, None)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_installed: Stack | None = None
_from_environment: Stack | None = None
_lock = threading.Lock()


def install(stack: Stack | None) -> Stack | None:
    """Make ``stack`` the process's stack (None removes it); returns the one it replaces."""
    global _installed
    with _lock:
        previous, _installed = _installed, stack
    return previous


def current_stack() -> Stack:
    """The process's stack: the installed one, else the one built from the environment.

    The latter follows :func:`get_settings`: when its cache is cleared (a test changed the
    environment), the next call builds a new stack from the new settings.
    """
    global _from_environment
    with _lock:
        if _installed is not None:
            return _installed
        settings = get_settings()
        if _from_environment is None or _from_environment.settings is not settings:
            if _from_environment is not None:
                _from_environment.close()
            _from_environment = Stack(settings)
        return _from_environment
