"""The monitoring database: predictions, feedback, monitor results and alerts.

:class:`MonitoringDB` (``database``) is the one owner of its schema (the Alembic migrations in
``migrations/``, mirrored by the models in ``tables``), of its connection pool and of every query
against its tables; nothing else in the package writes SQL against them.
"""

from mlops_stack.monitoring_db.database import (
    AlertChange,
    Deleted,
    MonitoringDB,
    Scope,
    WindowExtent,
    write_isolating,
)
from mlops_stack.monitoring_db.tables import FeatureDriftRow, MonitorRunRow

__all__ = [
    "AlertChange",
    "Deleted",
    "FeatureDriftRow",
    "MonitorRunRow",
    "MonitoringDB",
    "Scope",
    "WindowExtent",
    "write_isolating",
]
