"""The retention flow: the monitoring database keeps ``MLOPS_RETENTION_DAYS`` days of rows.

Predictions (with their labels and shadow answers), orphaned shadow answers and labels, monitor
runs (with their per-feature drift) and resolved alerts older than that are deleted in short
transactions of at most ``MLOPS_RETENTION_BATCH_ROWS`` rows
(:meth:`~mlops_stack.monitoring_db.Upkeep.delete_older_than`), so the log writer keeps
inserting while a pass runs. The worker serves it as the ``retention/retention`` deployment,
every :data:`INTERVAL` (a pass then deletes about an hour's worth of rows); ``mlops retention``
runs one pass by hand, as a cron job would for the embedded SQLite file. Two workers never
delete at the same time: on PostgreSQL a pass holds an advisory lock, and a second one skips.
What a pass deleted is in its log line and in the run's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mlops_stack.flows.orchestration import flow, run_logger
from mlops_stack.flows.parameters import RetentionParameters
from mlops_stack.stack import current_stack

INTERVAL = timedelta(hours=1)
"""How often the worker's deployment runs: each pass stays about an hour's rows long."""


@dataclass(frozen=True)
class RetentionSummary:
    """What one pass did: the cutoff it applied and the rows it deleted, by table (empty
    when retention is off or another pass held the lock, ``skipped`` saying which)."""

    days: int
    cutoff: datetime | None
    deleted: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None


@flow(name="retention")
def retention_flow(
    params: RetentionParameters | None = None, now: datetime | None = None
) -> RetentionSummary:
    """Delete the monitoring database's rows older than ``params.days`` days (0: none).

    ``params`` None takes the options from the settings; ``now`` (default: the current time)
    is what the days count back from, so a test can place the boundary exactly.
    """
    stack = current_stack()
    params = params or RetentionParameters.from_settings(stack.settings)
    logger = run_logger()
    if params.days == 0:
        why = "retention is off (MLOPS_RETENTION_DAYS=0): every row is kept"
        logger.info(why)
        return RetentionSummary(days=0, cutoff=None, skipped=why)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=params.days)
    deleted = stack.upkeep.delete_older_than(cutoff, params.batch_rows)
    if deleted is None:
        why = "another retention pass holds the lock (a second worker): nothing deleted"
        logger.info(why)
        return RetentionSummary(days=params.days, cutoff=cutoff, skipped=why)
    counts = deleted.counts()
    logger.info(
        "retention: deleted rows older than %s (%d days): %s",
        cutoff.isoformat(timespec="seconds"),
        params.days,
        ", ".join(f"{name} {count}" for name, count in counts.items()),
    )
    return RetentionSummary(days=params.days, cutoff=cutoff, deleted=counts)
