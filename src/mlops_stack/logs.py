"""Structured logging for every stack process, through structlog.

Services log JSON lines (one event per line, easy to ship and grep); a person at a terminal
gets readable console lines. Every record of a process is rendered by one formatter
(:func:`formatter`): the project's structlog events, standard-library loggers (uvicorn,
alembic) and Prefect's own (flow and task runs, the runner), so a process never mixes two
formats. Prefect's lines keep the run they belong to as fields (``flow_run_name``, ...), and
so do the project's lines logged inside a flow or task run.

Prefect configures logging itself at ``import prefect``, in this process and in every flow-run
subprocess and temporary server it starts, from a YAML file. :func:`configure_logging`
therefore points Prefect at ``prefect_logging.yml`` next to this module (Prefect's own
configuration with :func:`formatter` on its console handler) through environment variables,
which those subprocesses inherit. Prefect's API handlers are untouched: the Prefect UI still
shows each flow run's log.

A traceback in the log never carries local variables (they can hold keys, passwords, request
bodies) and never more than the innermost :data:`TRACEBACK_FRAMES` frames of each exception:
both renderers format it with :func:`bounded_traceback`, not with structlog's default for
consoles (Rich, which prints every frame's locals). An error storm cannot flood the log
either: an error event is one line, and its traceback is attached to at most
:data:`TRACEBACKS_PER_MINUTE` events per exception type and minute (:class:`TracebackBudget`);
the others say ``traceback_suppressed=true`` and the next traceback shown counts them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

import structlog
from structlog.types import EventDict, ExcInfo, Processor, WrappedLogger

_HANDLER_NAME = "mlops-stack"
PREFECT_LOGGING_CONFIG = Path(__file__).with_name("prefect_logging.yml")
# The run a record belongs to, as Prefect's run loggers attach it (``extra``) to each record.
RUN_NAMES = ("flow_name", "flow_run_name", "task_name", "task_run_name")
RUN_IDS = ("flow_run_id", "task_run_id")
TRACEBACK_FRAMES = 20
"""Innermost frames kept per exception of a traceback (where it failed, not how it got there)."""
TRACEBACK_CHARS = 20_000
"""Longest traceback text kept (its end, where the exception is)."""
TRACEBACKS_PER_MINUTE = 5
"""Tracebacks logged per exception type and minute; further errors of that type log one line."""


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the current ``sys.stderr``, which test runners and notebooks swap at will.

    The one console handler of a process: ours, and Prefect's (``prefect_logging.yml``).
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _prefect_run(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Name the Prefect flow and task run an event was logged in, as Prefect's lines do.

    Reads Prefect's run context only where Prefect is already imported (a flow run); never
    imports it, so that a process without flows stays without Prefect.
    """
    context = sys.modules.get("prefect.context")
    if context is None:
        return event_dict
    flow = context.FlowRunContext.get()
    if flow is not None and flow.flow_run is not None:
        event_dict.setdefault("flow_run_id", str(flow.flow_run.id))
        event_dict.setdefault("flow_run_name", flow.flow_run.name)
        if flow.flow is not None:
            event_dict.setdefault("flow_name", flow.flow.name)
    task = context.TaskRunContext.get()
    if task is not None:
        event_dict.setdefault("task_run_id", str(task.task_run.id))
        event_dict.setdefault("task_run_name", task.task_run.name)
        event_dict.setdefault("task_name", task.task.name)
    return event_dict


def _known_run_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Leave out the run fields Prefect fills with ``"<unknown>"`` (before it loaded the flow)."""
    for key in (*RUN_NAMES, *RUN_IDS):
        if event_dict.get(key) == "<unknown>":
            del event_dict[key]
    return event_dict


def _run_names_only(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """On a terminal the run's name is enough: its flow is in Prefect's own first line, and
    its UUIDs would double the line's length."""
    for key in ("flow_name", "task_name", *RUN_IDS):
        event_dict.pop(key, None)
    return event_dict


def bounded_traceback(exc_info: ExcInfo) -> str:
    """The traceback of ``exc_info`` as Python prints it, but without local variables (never
    captured), at most :data:`TRACEBACK_FRAMES` frames per exception of the chain (the
    innermost) and :data:`TRACEBACK_CHARS` characters (the end)."""
    _type, value, tb = exc_info
    text = "".join(
        traceback.TracebackException(
            type(value), value, tb, limit=-TRACEBACK_FRAMES, capture_locals=False
        ).format()
    ).rstrip("\n")
    if len(text) > TRACEBACK_CHARS:
        cut = len(text) - TRACEBACK_CHARS
        text = f"[{cut} characters of traceback left out]\n" + text[cut:]
    return text


def _console_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """:func:`bounded_traceback` for structlog's ConsoleRenderer (``exception_formatter``)."""
    sio.write("\n" + bounded_traceback(exc_info))


def _exc_info(value: object) -> ExcInfo | None:
    """``exc_info`` as a log call may give it (an exception, a tuple, True), as a tuple."""
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        tb = value[2] if isinstance(value[2], TracebackType) else None
        return type(value[1]), value[1], tb
    if value is True:
        current = sys.exc_info()
        if current[1] is not None:
            return type(current[1]), current[1], current[2]
    return None


class TracebackBudget:
    """Lets at most ``per_minute`` tracebacks of each exception type through per minute.

    A structlog processor, before the renderer: an event with ``exc_info`` over the budget
    loses the traceback (one line instead of dozens) and says ``traceback_suppressed=true``;
    the next one shown says how many were left out before it (``tracebacks_suppressed``).
    Every event keeps its ``error_type``, so a storm can still be counted from the log.
    """

    def __init__(
        self,
        per_minute: int = TRACEBACKS_PER_MINUTE,
        max_types: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_minute = per_minute
        self.max_types = max_types
        self.clock = clock
        self._lock = threading.Lock()
        # exception type -> [minute, tracebacks shown in it, suppressed since the last shown]
        self._seen: dict[str, list[int]] = {}

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        exc_info = _exc_info(event_dict.get("exc_info"))
        if exc_info is None:
            event_dict.pop("exc_info", None)
            return event_dict
        event_dict["exc_info"] = exc_info  # resolved now: True means "the current exception"
        kind = f"{exc_info[0].__module__}.{exc_info[0].__qualname__}"
        event_dict.setdefault("error_type", kind)
        if self._allow(kind, event_dict):
            return event_dict
        del event_dict["exc_info"]
        event_dict["traceback_suppressed"] = True
        return event_dict

    def _allow(self, kind: str, event_dict: EventDict) -> bool:
        minute = int(self.clock() // 60)
        with self._lock:
            if kind not in self._seen and len(self._seen) >= self.max_types:
                self._seen.clear()  # a flood of distinct types: start counting again
            state = self._seen.setdefault(kind, [minute, 0, 0])
            if state[0] != minute:
                state[0], state[1] = minute, 0
            if state[1] >= self.per_minute:
                state[2] += 1
                return False
            state[1] += 1
            if state[2]:
                event_dict["tracebacks_suppressed"] = state[2]
                state[2] = 0
            return True


_TRACEBACKS = TracebackBudget()
"""One budget per process, shared by every formatter (ours and the ones Prefect builds)."""


def _shared() -> list[Processor]:
    """What every event gets, whether it came through structlog or a standard logger."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=(*RUN_NAMES, *RUN_IDS)),
        _known_run_fields,
        _prefect_run,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _route_structlog() -> None:
    """Send structlog's events into the standard library, where the handlers render them.

    Idempotent. Warnings become log records too (``py.warnings``), so that a library's
    ``RuntimeWarning`` is one more line of the same format rather than raw text.
    """
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)


def formatter(json: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of a process: JSON lines, or structlog's console lines.

    Prefect builds it from ``prefect_logging.yml`` in every process it configures, flow-run
    subprocesses included, before their first line: that is where the project's code first
    runs there, so it also routes structlog into the standard library.
    """
    _route_structlog()
    renderer: list[Processor] = (
        [
            structlog.processors.ExceptionRenderer(bounded_traceback),
            structlog.processors.JSONRenderer(),
        ]
        if json
        else [
            _run_names_only,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_console_traceback),
        ]
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _TRACEBACKS,
            *renderer,
        ],
    )


def _is_console_handler(handler: logging.Handler) -> bool:
    """Ours (whoever installed it) or Prefect's default console handler: one is enough."""
    return isinstance(handler, StderrHandler) or type(handler).__name__ == "PrefectConsoleHandler"


def _configure_prefect(level: str, json: bool) -> None:
    """Have Prefect, here and in the processes it starts, render through :func:`formatter`.

    Only when the user chose no logging file of their own (``PREFECT_LOGGING_SETTINGS_PATH``,
    or Prefect's default place for one, ``$PREFECT_HOME/logging.yml``): theirs wins, and the
    two overrides below are keys of our file.
    """
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    if "PREFECT_LOGGING_SETTINGS_PATH" not in os.environ and (home / "logging.yml").exists():
        return
    chosen = os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(PREFECT_LOGGING_CONFIG))
    if Path(chosen) != PREFECT_LOGGING_CONFIG:
        return
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER"] = "json" if json else "console"
    os.environ["PREFECT_LOGGING_LOGGERS_MLOPS_STACK_LEVEL"] = level.upper()


def _leave_mlflow_loggers_alone() -> None:
    """MLflow gives its loggers a handler of its own at ``import mlflow`` unless told not to
    (``MLFLOW_CONFIGURE_LOGGING``): told, its lines ("Successfully registered model ...")
    reach the one console handler like everyone else's. A user's own choice wins."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Set up structlog, the standard library, Prefect's and MLflow's logging for this process.

    Call it before Prefect and MLflow are imported (the CLI does): they read their logging
    settings then, here and in the processes they start.
    """
    _route_structlog()
    _configure_prefect(level, json)
    _leave_mlflow_loggers_alone()
    handler = StderrHandler()
    handler.setFormatter(formatter(json))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only the console handlers, ours or Prefect's: calling this twice, or after
    # Prefect configured itself, must not print a line twice; handlers installed by others
    # (pytest's capture, a host application) stay.
    root.handlers = [h for h in root.handlers if not _is_console_handler(h)] + [handler]
    root.setLevel(level.upper())
    # The stack's own loggers keep their handler even where Prefect replaces the root
    # handlers with its default console handler (a process that imported Prefect before it
    # read prefect_logging.yml): without this a worker would go silent, or print its lines
    # through a handler that does not render structlog's events.
    ours = logging.getLogger("mlops_stack")
    ours.handlers = [h for h in ours.handlers if not _is_console_handler(h)] + [handler]
    ours.propagate = False
    ours.setLevel(level.upper())  # Prefect sets the root to WARNING; our level is ours to set
    # MLflow and alembic are chatty at INFO about things a user did not ask for.
    for noisy in ("alembic", "httpx", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
