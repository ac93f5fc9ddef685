"""One monitoring database and its stores, opened the way a test needs them.

A process gets its monitoring database and the stores over it from its ``Stack``; a test that
only needs the database (a URL of its own, SQLite or the test PostgreSQL) opens the same parts
here, under the same attribute names as the ``Stack``'s, without building settings and a stack.
"""

from __future__ import annotations

from types import TracebackType

from mlops_stack.monitoring_db import (
    DashboardReads,
    Database,
    MonitorStore,
    PredictionStore,
    Upkeep,
)


class Monitoring:
    """A :class:`Database` at ``url`` and its four stores; close with :meth:`dispose`."""

    def __init__(self, url: str) -> None:
        self.monitoring_db = Database(url)
        self.predictions = PredictionStore(self.monitoring_db)
        self.monitor_store = MonitorStore(self.monitoring_db)
        self.dashboard_reads = DashboardReads(self.monitoring_db)
        self.upkeep = Upkeep(self.monitoring_db)

    def migrate(self) -> None:
        self.monitoring_db.migrate()

    def dispose(self) -> None:
        self.monitoring_db.dispose()

    def __enter__(self) -> Monitoring:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()
