"""Retention against real PostgreSQL and SQLite: what is older than the cutoff goes, in batches.

Rows are placed around an exact cutoff (one at it, one a microsecond before), with labels,
shadow answers, monitor runs with their drift and alerts, so each rule of
``Upkeep.delete_older_than`` is seen to delete what it should and keep the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops_stack.flows.parameters import RetentionParameters
from mlops_stack.flows.retention import retention_flow
from mlops_stack.monitoring_db import FeatureDriftRow, MonitorRunRow
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import FEEDBACK, PREDICTIONS, SHADOW_PREDICTIONS, AlertRow
from mlops_stack.stack import current_stack
from tests.support.monitoring import Monitoring

CUTOFF = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
OLD = 23  # predictions before the cutoff: with batches of 5, five transactions, the last short
NEW = 4  # at the cutoff and after it
BATCH = 5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Monitoring]:
    """A migrated SQLite database (tests/integration/monitoring_db/test_retention.py runs the
    same tests on PostgreSQL)."""
    with Monitoring(f"sqlite:///{tmp_path / 'monitoring.db'}") as db:
        db.migrate()
        yield db


def prediction(request_id: str, created_at: datetime, shadow: bool = False) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        row=0,
        created_at=created_at,
        model_name="m",
        model_version="2" if shadow else "1",
        features={f"f{i}": i * 0.5 for i in range(30)},
        prediction="yes",
        probabilities={"no": 0.3, "yes": 0.7},
        latency_ms=2.0,
        shadow=shadow,
    )


def old_times() -> list[datetime]:
    """``OLD`` moments before the cutoff, the newest a microsecond before it."""
    return [CUTOFF - timedelta(microseconds=1) - timedelta(hours=i) for i in range(OLD)]


def new_times() -> list[datetime]:
    """``NEW`` moments from the cutoff on, the first exactly at it."""
    return [CUTOFF + timedelta(minutes=i) for i in range(NEW)]


def fill(store: Monitoring) -> None:
    """Predictions either side of the cutoff, each with a label and a shadow answer, plus
    orphaned labels and shadow answers, monitor runs with drift, and alerts."""
    rows = [prediction(f"old-{i}", t) for i, t in enumerate(old_times())]
    rows += [prediction(f"new-{i}", t) for i, t in enumerate(new_times())]
    # the shadow answer of a row is scored a little later: an old row's may fall after the
    # cutoff, and still goes with its row
    shadows = [
        replace(r, shadow=True, created_at=r.created_at + timedelta(seconds=1)) for r in rows
    ]
    orphan_shadows = [prediction("gone-s-old", CUTOFF - timedelta(days=1), shadow=True)]
    orphan_shadows += [prediction("gone-s-new", CUTOFF + timedelta(seconds=5), shadow=True)]
    store.predictions.write_predictions(rows + shadows + orphan_shadows)
    labelled = [(r.request_id, 0, "yes") for r in rows]
    store.predictions.record_feedback([*labelled, ("orphan-old", 0, "no"), ("orphan-new", 0, "no")])
    received = {
        # an old label of a kept row stays with it; labels of no row go by their own time
        "new-0": CUTOFF - timedelta(days=3),
        "orphan-old": CUTOFF - timedelta(microseconds=1),
        "orphan-new": CUTOFF,
        # a label received after the cutoff for an old row still goes with its row
        "old-0": CUTOFF + timedelta(days=1),
    }
    with store.monitoring_db.engine.begin() as connection:
        for request_id, when in received.items():
            connection.execute(
                sa.update(FEEDBACK)
                .where(FEEDBACK.c.request_id == request_id)
                .values(received_at=when)
            )
    for i, started in enumerate(
        [CUTOFF - timedelta(days=2), CUTOFF - timedelta(seconds=1), CUTOFF]
    ):
        run = MonitorRunRow(
            started_at=started, finished_at=started, model_name="m", window_rows=1,
            analysed_rows=1, status="ok", reason=f"run {i}", labelled_rows=0,
        )  # fmt: skip
        drift = [
            FeatureDriftRow(
                feature=f"f{j}",
                kind="numeric",
                method="K-S",
                threshold=0.05,
                score=0.5,
                drifted=False,
            )  # fmt: skip
            for j in range(3)
        ]
        store.monitor_store.save_run(run, drift)
    store.monitor_store.update_alerts(
        "m", {"drift": "old, resolved", "degraded": "old, still open"}, run_id=1
    )
    store.monitor_store.update_alerts(
        "m", {"degraded": "old, still open"}, run_id=2
    )  # resolves drift
    store.monitor_store.update_alerts(
        "m", {"degraded": "old, still open", "drift": "again"}, run_id=3
    )
    store.monitor_store.update_alerts(
        "m", {"degraded": "old, still open"}, run_id=3
    )  # resolves it again
    with store.monitoring_db.engine.begin() as connection:
        alerts = AlertRow.__table__
        resolved = connection.execute(
            sa.select(alerts.c.id).where(alerts.c.state == "resolved").order_by(alerts.c.id)
        ).scalars()
        first, second = list(resolved)
        for alert_id, when in ((first, CUTOFF - timedelta(seconds=1)), (second, CUTOFF)):
            connection.execute(
                sa.update(alerts).where(alerts.c.id == alert_id).values(resolved_at=when)
            )
        connection.execute(
            sa.update(alerts)
            .where(alerts.c.state == "open")
            .values(opened_at=CUTOFF - timedelta(days=400))
        )


def ids(store: Monitoring, table: sa.Table) -> set[str]:
    with store.monitoring_db.engine.connect() as connection:
        return set(connection.execute(sa.select(table.c.request_id)).scalars())


def counts(store: Monitoring) -> dict[str, int]:
    tables = {
        "predictions": PREDICTIONS,
        "shadow_predictions": SHADOW_PREDICTIONS,
        "feedback": FEEDBACK,
        "monitor_runs": MonitorRunRow.__table__,
        "feature_drift": FeatureDriftRow.__table__,
        "alerts": AlertRow.__table__,
    }
    with store.monitoring_db.engine.connect() as connection:
        return {
            name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in tables.items()
        }


def test_rows_before_the_cutoff_go_in_batches_and_the_rest_stays(store: Monitoring):
    fill(store)
    before = counts(store)
    deleted = store.upkeep.delete_older_than(CUTOFF, batch_rows=BATCH)
    assert deleted is not None
    expected = {
        "predictions": OLD,
        "shadow_predictions": OLD + 1,  # each old row's answer and the old orphan
        "feedback": OLD + 1,  # each old row's label and the old orphan label
        "monitor_runs": 2,
        "feature_drift": 6,
        "alerts": 1,
    }
    # one transaction per batch, each step until a batch comes up short: predictions 23 rows
    # in 5 (5+5+5+5+3), shadow orphans 1, label orphans 1, runs 1, alerts 1
    assert deleted.counts() == expected | {"transactions": 9}
    assert counts(store) == {name: before[name] - expected[name] for name in expected}
    new = {f"new-{i}" for i in range(NEW)}
    assert ids(store, PREDICTIONS) == new
    assert ids(store, FEEDBACK) == new | {"orphan-new"}
    assert ids(store, SHADOW_PREDICTIONS) == new | {"gone-s-new"}
    assert [run.reason for run in store.monitor_store.runs("m")] == ["run 2"]
    alerts = {(a.condition, a.state) for a in store.monitor_store.alerts()}
    assert alerts == {("degraded", "open"), ("drift", "resolved")}  # the one resolved at CUTOFF
    # nothing left to delete: a second pass deletes nothing, in one transaction per step
    again = store.upkeep.delete_older_than(CUTOFF, batch_rows=BATCH)
    assert again is not None and again.counts() == dict.fromkeys(expected, 0) | {"transactions": 5}


def test_a_batch_as_large_as_the_rows_still_ends(store: Monitoring):
    store.predictions.write_predictions(
        [prediction(f"old-{i}", t) for i, t in enumerate(old_times())]
    )
    deleted = store.upkeep.delete_older_than(CUTOFF, batch_rows=OLD)
    assert deleted is not None and deleted.predictions == OLD
    assert deleted.transactions == 2 + 4  # a full batch, an empty one; one per other step
    assert store.predictions.count_predictions() == 0


def test_the_flow_counts_back_from_now_and_zero_days_keeps_everything(stack):
    stack(retention_days="0", retention_batch_rows="4")
    store = current_stack()  # its stores: predictions, monitor_store, upkeep, ...
    now = CUTOFF + timedelta(days=90)
    store.predictions.write_predictions(
        [prediction(f"old-{i}", t) for i, t in enumerate(old_times())]
        + [prediction(f"new-{i}", t) for i, t in enumerate(new_times())]
    )
    off = retention_flow(now=now)  # the settings' 0 days
    assert off.skipped is not None and "MLOPS_RETENTION_DAYS=0" in off.skipped
    assert off.deleted == {} and store.predictions.count_predictions() == OLD + NEW
    summary = retention_flow(RetentionParameters(days=90, batch_rows=4), now=now)
    assert summary.cutoff == CUTOFF and summary.skipped is None
    assert summary.deleted["predictions"] == OLD
    assert summary.deleted["transactions"] == 6 + 4  # 23 rows in batches of 4, then 4 steps
    assert ids(store, PREDICTIONS) == {f"new-{i}" for i in range(NEW)}
