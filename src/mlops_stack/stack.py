"""The composition root: one :class:`Stack` per process, built from the settings.

Every entry point (a CLI command, the worker, a flow run, the predictor, the dashboard, the demo)
builds the stack's parts here and nowhere else: the registry (bound to its MLflow client and
model name, announcing every change of champion), the monitoring database (the one owner of its
schema and queries) and the notifier (Redis notices and webhooks). The parts do not build each
other, so a newcomer finds in this file what a process is made of, and a test builds the same
thing from settings of its own.

A flow finds the stack of its process with :func:`current_stack`: the one an entry point
installed (the CLI, the demo, a test), or else one built from the environment (a flow run that
the worker started in a subprocess of its own).
"""

from __future__ import annotations

import threading
from functools import cached_property
from types import TracebackType

from mlops_stack.monitoring_db import MonitoringDB
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
    def monitoring(self) -> MonitoringDB:
        """The monitoring database: one connection pool for the process."""
        return MonitoringDB(self.settings.resolved_monitoring_db_url)

    def close(self) -> None:
        """Release what holds connections (the database's pool); the stack can be rebuilt."""
        if "monitoring" in self.__dict__:
            self.monitoring.dispose()
            del self.__dict__["monitoring"]

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
