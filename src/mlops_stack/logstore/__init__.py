"""The prediction log: records, the monitoring database, and the path between them.

``records`` (the :class:`PredictionRecord` every hop agrees on), ``db`` (tables, Alembic
migrations and :class:`LogStore`), ``sinks`` (what the predictor submits records to, in
memory with a spool), ``spool`` (the sinks' overflow files) and ``stream`` (the Redis stream and
the :class:`StreamWriter` that drains it into the database).
"""

from mlops_stack.logstore.db import LogStore
from mlops_stack.logstore.records import PredictionRecord
from mlops_stack.logstore.results import ResultStore
from mlops_stack.logstore.sinks import DatabaseSink, PredictionSink, RedisStreamSink, make_sink
from mlops_stack.logstore.stream import StreamWriter

__all__ = [
    "DatabaseSink",
    "LogStore",
    "PredictionRecord",
    "PredictionSink",
    "RedisStreamSink",
    "ResultStore",
    "StreamWriter",
    "make_sink",
]
