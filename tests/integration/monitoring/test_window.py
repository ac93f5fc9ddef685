"""Reading a monitor window on PostgreSQL, and a monitor run that samples it.

The window tests of tests/unit/monitoring/test_window.py run here again against a real
PostgreSQL (imported, with this module's ``monitoring_url``); the flow test checks that a
monitor run samples the window and counts quality over every row, on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlops_stack.monitoring_db.records import PredictionRecord
from tests.unit.monitoring.test_window import (  # noqa: F401 (re-run on PostgreSQL)
    store,
    test_a_regression_window_reads_numbers_and_scores_every_labelled_row,
    test_bad_rows_outside_the_sample_are_still_counted,
    test_the_sample_note_says_what_was_sampled_and_what_was_not,
)


@pytest.fixture
def monitoring_url(postgres_url: str) -> str:
    """The test PostgreSQL, for the window tests imported above."""
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def either_url(request, tmp_path: Path) -> str:
    """A monitoring database URL on each dialect (request it before ``stack``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return request.getfixturevalue("postgres_url")


def test_monitor_run_samples_the_window_and_counts_quality_over_all_rows(either_url, stack):
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from tests.support.traffic import Traffic

    settings = stack(
        candidates="logistic_regression",
        monitoring_db_url=either_url,
        monitor_window_rows="1000",
        monitor_min_rows="100",
        monitor_max_rows="150",
    )
    train_flow()
    traffic = Traffic(settings)
    traffic.send(400, seed=1)
    bad = traffic.features.iloc[0].to_dict() | {"mean symmetry": 1e6}
    traffic.store.predictions.write_predictions(
        [
            PredictionRecord(
                request_id="bad",
                row=0,
                created_at=datetime.now(UTC),
                model_name=settings.model_name,
                model_version="1",
                features=bad,
                prediction=1,
                probabilities={"0": 0.1, "1": 0.9},
                latency_ms=1.0,
            )
        ]
    )
    summary = monitor_flow()
    assert summary.window_rows == 401 and summary.analysed_rows == 150
    note = (
        "analysed a uniform random sample of 150 of 401 rows (seed 42); "
        "reference: a uniform random sample of 150 of 455 rows (seed 42); "
        "data quality over all 401 rows"
    )
    assert summary.sample_note == note
    [run] = traffic.store.monitor_store.runs(settings.model_name)
    assert (run.window_rows, run.analysed_rows, run.sample_note) == (401, 150, note)
    assert run.window_start < run.window_end
    quality = {q["feature"]: q for q in run.quality}
    assert quality["mean symmetry"]["out_of_range"] == 1
    traffic.store.dispose()
