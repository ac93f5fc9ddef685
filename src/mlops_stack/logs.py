"""Structured logging for every stack process, through structlog.

Services log JSON lines (one event per line, easy to ship and grep); a person at a terminal
gets readable console lines. Standard-library loggers (uvicorn, alembic) go through the same
renderer so that one process never mixes two formats.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_HANDLER_NAME = "mlops-stack"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the current ``sys.stderr``, which test runners and notebooks swap at will."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Set up structlog and the standard library root logger once per process."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: calling this twice must not duplicate lines, and handlers
    # installed by others (pytest's capture, a host application) stay.
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
    # The stack's own loggers keep their handler even when Prefect later replaces the root
    # handlers with its console handler (it does on first flow import): without this a worker
    # would go silent, and a flow would print our lines twice in two formats.
    ours = logging.getLogger("mlops_stack")
    ours.handlers = [h for h in ours.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    ours.propagate = False
    ours.setLevel(level.upper())  # Prefect sets the root to WARNING; our level is ours to set
    # MLflow and alembic are chatty at INFO about things a user did not ask for.
    for noisy in ("alembic", "httpx", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
