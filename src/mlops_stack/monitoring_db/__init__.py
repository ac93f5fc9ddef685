"""The monitoring database: predictions, feedback, monitor results and alerts.

:class:`MonitoringDB` is the one owner of its schema (the Alembic migrations in ``migrations/``),
of its connection pool and of every query against its tables; nothing else in the package writes
SQL against them.
"""

from mlops_stack.monitoring_db.database import MonitoringDB
from mlops_stack.monitoring_db.results import ResultStore

__all__ = ["MonitoringDB", "ResultStore"]
