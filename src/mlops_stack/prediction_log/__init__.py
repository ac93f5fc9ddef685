"""The prediction log: how each answered row travels from the predictor to the monitoring database.

``records`` (the :class:`PredictionRecord` every hop agrees on), ``sinks`` (what the predictor
submits records to, in memory with a spool), ``spool`` (the sinks' overflow files) and ``stream``
(the Redis stream and the :class:`StreamWriter` that drains it into the monitoring database).
The database itself, its schema and its queries live in :mod:`mlops_stack.monitoring_db`.

The sinks and the stream writer are imported on first use: ``monitoring_db`` imports
``records``, and ``sinks``/``stream`` import ``monitoring_db``, so importing them here eagerly
would make ``import mlops_stack.monitoring_db`` (done first) a circular import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mlops_stack.prediction_log.records import PredictionRecord

if TYPE_CHECKING:
    from mlops_stack.prediction_log.sinks import (
        DatabaseSink,
        PredictionSink,
        RedisStreamSink,
        make_sink,
    )
    from mlops_stack.prediction_log.stream import StreamWriter

_LAZY = {
    "DatabaseSink": "sinks",
    "PredictionSink": "sinks",
    "RedisStreamSink": "sinks",
    "make_sink": "sinks",
    "StreamWriter": "stream",
}

__all__ = [
    "DatabaseSink",
    "PredictionRecord",
    "PredictionSink",
    "RedisStreamSink",
    "StreamWriter",
    "make_sink",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
