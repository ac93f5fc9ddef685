"""The prediction log: how each answered row travels from the predictor to the monitoring database.

``records`` (the :class:`PredictionRecord` every hop agrees on), ``sinks`` (what the predictor
submits records to, in memory with a spool), ``spool`` (the sinks' overflow files) and ``stream``
(the Redis stream and the :class:`StreamWriter` that drains it into the monitoring database).
The database itself, its schema and its queries live in :mod:`mlops_stack.monitoring_db`.
"""

from mlops_stack.prediction_log.records import PredictionRecord
from mlops_stack.prediction_log.sinks import (
    DatabaseSink,
    PredictionSink,
    RedisStreamSink,
    make_sink,
)
from mlops_stack.prediction_log.stream import StreamWriter

__all__ = [
    "DatabaseSink",
    "PredictionRecord",
    "PredictionSink",
    "RedisStreamSink",
    "StreamWriter",
    "make_sink",
]
