"""Disk cost of the prediction log in PostgreSQL, per million predictions.

Inserts ``--rows`` predictions of the demo model through the log path's own write
(``PredictionStore.write_predictions``, batches of ``MLOPS_PREDICTION_LOG_BATCH_ROWS`` = 500
rows, as the log writer does) into a temporary database on a PostgreSQL server, then measures
each table with ``pg_relation_size`` (heap), its TOAST table and ``pg_indexes_size``, after
``VACUUM ANALYZE`` (the visibility and free-space maps a table has in service). A row is what the
predictor logs for one answer: a 32-hex request id (nginx's ``$request_id``), the breast cancer
table's 30 features as JSON (a row of the table, its values as a client sends them), the class,
both probabilities, the model's name and version and the latency. Every row also gets a shadow
answer (``shadow_predictions``: a challenger scoring in shadow answers every row) and
``--labelled`` of them a label (``feedback``); the three tables are reported apart, so the cost
without a challenger or without labels reads off the same output.

The figure is measured at half and at all of the rows: a per-row cost that stays the same
at both is what makes scaling it to a million (and to ``rate x days``) honest. Then one
retention pass deletes the older half (``Upkeep.delete_older_than``, batches of
``MLOPS_RETENTION_BATCH_ROWS`` = 5000): its time says what an hourly pass costs.

    python benchmarks/disk.py --db-url postgresql+psycopg2://user@host:5432/postgres

Not a test: record the figures in docs/deploy-vm.md (retention).
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from scratch import temporary_database
from sqlalchemy import func, select, text
from tests.support.monitoring import Monitoring

from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import PREDICTIONS

BATCH = 500  # MLOPS_PREDICTION_LOG_BATCH_ROWS's default: rows per write of the log writer
TABLES = ("predictions", "shadow_predictions", "feedback")
MB = 1024 * 1024


def demo_rows(count: int, seed: int) -> list[tuple[dict[str, float], int, dict[str, float]]]:
    """``count`` answers of the demo model: a row of the breast cancer table (drawn with
    replacement), its class and the two probabilities (random, as a model's would vary)."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer(as_frame=True).frame
    features = table.drop(columns="target")
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(table), count)
    names = list(features.columns)
    values = features.to_numpy()
    answers = []
    for index, p in zip(picked, rng.random(count), strict=True):
        row = {name: float(value) for name, value in zip(names, values[index], strict=True)}
        answers.append((row, int(p > 0.5), {"0": float(1 - p), "1": float(p)}))
    return answers


def records(start: int, count: int, seed: int) -> list[PredictionRecord]:
    """Predictions ``start`` .. ``start + count``, each followed by its shadow answer."""
    began = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i, (features, label, probabilities) in enumerate(demo_rows(count, seed + start)):
        served = PredictionRecord(
            request_id=uuid.uuid4().hex,
            row=0,
            created_at=began + timedelta(milliseconds=50 * (start + i)),
            model_name="mlops-classifier",
            model_version="3",
            features=features,
            prediction=label,
            probabilities=probabilities,
            latency_ms=3.2,
        )
        shadow = PredictionRecord(
            **{**served.__dict__, "model_version": "4", "latency_ms": 3.4, "shadow": True}
        )
        out += [served, shadow]
    return out


@dataclass(frozen=True)
class Size:
    rows: int
    heap: int
    toast: int
    indexes: int

    @property
    def total(self) -> int:
        return self.heap + self.toast + self.indexes

    def per_row(self, part: int) -> float:
        return part / self.rows if self.rows else 0.0


def sizes(store: Monitoring) -> dict[str, Size]:
    """Heap, TOAST (with its index) and indexes of each table, after VACUUM ANALYZE."""
    with store.monitoring_db.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.execute(text("VACUUM ANALYZE"))
        measured = {}
        for table in TABLES:
            rows, heap, toast, indexes = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM " + table + "), pg_relation_size(c.oid), "
                    "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), "
                    "pg_indexes_size(c.oid) FROM pg_class c WHERE c.oid = CAST(:name AS regclass)"
                ),
                {"name": table},
            ).one()
            measured[table] = Size(rows, heap, toast, indexes)
    return measured


def report(measured: dict[str, Size], predictions: int) -> None:
    """Bytes per row by part, and MB per million predictions, table by table."""
    print(f"  at {predictions:,} predictions:")
    print(f"    {'table':<20}{'rows':>10}{'heap B/row':>12}{'toast':>8}{'index':>8}"
          f"{'total':>8}{'MB per 1M predictions':>24}")  # fmt: skip
    overall = 0.0
    for table, size in measured.items():
        per_million = size.total / predictions * 1e6 / MB
        overall += per_million
        print(
            f"    {table:<20}{size.rows:>10,}{size.per_row(size.heap):>12.0f}"
            f"{size.per_row(size.toast):>8.0f}{size.per_row(size.indexes):>8.0f}"
            f"{size.per_row(size.total):>8.0f}{per_million:>24.0f}"
        )
    alone = measured["predictions"].total / predictions * 1e6 / MB
    print(f"    per million predictions: {alone:.0f} MB alone, {overall:.0f} MB with a shadow "
          "answer for each and the labels above")  # fmt: skip


def delete_half(store: Monitoring, batch_rows: int = 5000) -> None:
    """One retention pass over the older half of the rows: rows per second it deletes."""
    with store.monitoring_db.engine.connect() as connection:
        times = select(PREDICTIONS.c.created_at).order_by(PREDICTIONS.c.created_at)
        count = connection.execute(select(func.count()).select_from(PREDICTIONS)).scalar_one()
        cutoff = connection.execute(times.offset(count // 2).limit(1)).scalar_one()
    started = time.perf_counter()
    deleted = store.upkeep.delete_older_than(cutoff, batch_rows)
    took = time.perf_counter() - started
    assert deleted is not None
    rows = deleted.predictions + deleted.shadow_predictions + deleted.feedback
    print(
        f"retention pass: {deleted.counts()} in {took:.1f} s: {deleted.predictions / took:,.0f} "
        f"predictions/s ({rows / took:,.0f} rows/s with their shadow answers and labels)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", required=True, help="a PostgreSQL server (its admin URL)")
    parser.add_argument("--rows", type=int, default=200_000, help="predictions to insert")
    parser.add_argument("--labelled", type=float, default=0.1, help="share of rows labelled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    url, drop = temporary_database(args.db_url, "bench_disk")
    try:
        with Monitoring(url) as store:
            store.migrate()
            started = time.perf_counter()
            for half in (args.rows // 2, args.rows - args.rows // 2):
                done = store.predictions.count_predictions()
                for start in range(done, done + half, BATCH):
                    batch = records(start, min(BATCH, done + half - start), args.seed)
                    store.predictions.write_predictions(batch)
                    served = [r for r in batch if not r.shadow]
                    labelled = served[: int(len(served) * args.labelled)]
                    store.predictions.record_feedback(
                        [(r.request_id, r.row, str(r.prediction)) for r in labelled]
                    )
                inserted = store.predictions.count_predictions()
                print(f"inserted {inserted:,} predictions ({time.perf_counter() - started:.0f} s)")
                report(sizes(store), inserted)
            delete_half(store)
    finally:
        drop()


if __name__ == "__main__":
    main()
