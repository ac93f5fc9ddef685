"""The prediction log: how each answered row travels from the predictor to the monitoring database.

``sinks`` (what the predictor submits records to, in memory with a spool; their shared machinery
in ``queue_sink``), ``spool`` (the sinks' overflow files) and ``stream`` (the Redis stream and the
:class:`StreamWriter` that drains it into the monitoring database). The record every hop agrees
on, :class:`~mlops_stack.monitoring_db.records.PredictionRecord`, lives one layer down with the
database that stores it, as do the database's writes (``monitoring_db.predictions``).

Import from the submodules: this package imports nothing itself.
"""
