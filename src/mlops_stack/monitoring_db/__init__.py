"""The monitoring database: logged predictions, labels, monitor results and alerts.

Every query against its tables lives in this package, grouped by the consumer that owns it, each
a small class over one :class:`Database` (the engine, the migrations and health):

- :class:`PredictionStore` (``predictions``): the prediction log's writes and ``/feedback``;
- :class:`MonitorStore` (``monitor``): the monitor's window, shadow pairs, runs and alerts;
- :class:`DashboardReads` (``dashboard``): what the dashboard's pages show;
- :class:`Upkeep` (``upkeep``): retention deletes and the workers' advisory locks.

The schema is created only by the Alembic migrations in ``migrations/`` (mirrored by the models in
``tables``); :class:`PredictionRecord` (``records``) is the row every hop of the log path agrees
on. Nothing outside this package writes SQL against these tables.
"""

from mlops_stack.monitoring_db.dashboard import DashboardReads, Scope
from mlops_stack.monitoring_db.engine import Database
from mlops_stack.monitoring_db.monitor import AlertChange, MonitorStore, WindowExtent
from mlops_stack.monitoring_db.predictions import NotCanonical, PredictionStore, write_isolating
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import FeatureDriftRow, MonitorRunRow
from mlops_stack.monitoring_db.upkeep import Deleted, Upkeep
from mlops_stack.monitoring_db.window_frames import ShadowPairs, features

__all__ = [
    "AlertChange",
    "DashboardReads",
    "Database",
    "Deleted",
    "FeatureDriftRow",
    "MonitorRunRow",
    "MonitorStore",
    "NotCanonical",
    "PredictionRecord",
    "PredictionStore",
    "Scope",
    "ShadowPairs",
    "Upkeep",
    "WindowExtent",
    "features",
    "write_isolating",
]
