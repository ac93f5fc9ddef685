"""The prediction log: how each answered row travels from the predictor to the monitoring database.

``records`` (the :class:`PredictionRecord` every hop agrees on), ``sinks`` (what the predictor
submits records to, in memory with a spool), ``spool`` (the sinks' overflow files) and ``stream``
(the Redis stream and the :class:`StreamWriter` that drains it into the monitoring database).
The database itself, its schema and its queries live in :mod:`mlops_stack.monitoring_db`.

Import from the submodules: this package imports nothing itself, so that the monitoring database
(which stores records) and the sinks (which write to it) never import each other in a circle.
"""
