"""Reading a monitor window in one streamed pass: the sample, and counts over every row.

The store streams the window in small chunks here, so that the sample, the quality counts and
the labelled rows all have to be put together across chunks, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mlops_stack.data import Dataset, DatasetSchema, infer_schema
from mlops_stack.monitoring.checks import Reference, check_sample
from mlops_stack.monitoring.quality import QualityCounter, model_quality
from mlops_stack.monitoring.window import Reservoir, read_window
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.names import Task
from tests.support.monitoring import Monitoring
from tests.support.tables import mixed_table

ROWS = 2000
BAD_AGE = (5, 1234, 1999)  # rows with an age far outside training's range
UNSEEN_CITY = (7, 777)  # rows with a city training never saw
LABELLED = range(0, ROWS, 10)


@pytest.fixture
def monitoring_url(tmp_path: Path) -> str:
    """A SQLite monitoring database URL (tests/integration/monitoring/test_window.py runs the
    same tests on PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


@pytest.fixture
def store(monitoring_url: str):
    log_store = Monitoring(monitoring_url)
    log_store.migrate()
    yield log_store
    log_store.dispose()


def schema() -> DatasetSchema:
    return infer_schema(Dataset(frame=mixed_table(400, seed=0), target="churn", source="test"))


def logged(log_store: Monitoring) -> pd.DataFrame:
    """ROWS logged rows of mixed features, a few of them bad, every tenth labelled."""
    table = mixed_table(ROWS, seed=1).drop(columns="churn")
    table.loc[list(BAD_AGE), "age"] = 500.0
    table.loc[list(UNSEEN_CITY), "city"] = "atlantis"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    records = [
        PredictionRecord(
            request_id=f"r{i}",
            row=0,
            created_at=start + timedelta(seconds=i),
            model_name="churn",
            model_version="1",
            features=values,
            prediction="yes" if i % 3 else "no",
            probabilities={"no": 0.4, "yes": 0.6} if i % 3 else {"no": 0.7, "yes": 0.3},
            latency_ms=1.0,
        )
        for i, values in enumerate(table.to_dict("records"))
    ]
    log_store.predictions.write_predictions(records)
    log_store.predictions.record_feedback(
        [(f"r{i}", 0, "yes" if i % 2 else "no") for i in LABELLED]
    )
    return table


def test_bad_rows_outside_the_sample_are_still_counted(store: Monitoring):
    table = logged(store)
    spec = schema()
    chunks = store.monitor_store.window_chunks(limit=ROWS, model_name="churn", chunk_rows=300)
    window = read_window(chunks, spec, max_rows=100, seed=3)

    assert window.extent.rows == ROWS and len(window.features) == 100
    assert window.extent.start == datetime(2025, 1, 1, tzinfo=UTC)
    # positions are newest first: bad row i streams at ROWS - 1 - i
    sampled = set(ROWS - 1 - window.features.index)
    assert set(BAD_AGE) - sampled and set(UNSEEN_CITY) - sampled  # some left out of the sample
    quality = {q.feature: q for q in window.whole.quality}
    assert quality["age"].out_of_range == len(BAD_AGE)
    assert quality["city"].unseen_categories == len(UNSEEN_CITY)
    assert quality["city"].unseen_examples == ["atlantis"]
    assert quality["income"].missing_share == pytest.approx(table["income"].isna().mean())

    # the same figures as counting the whole window in memory
    whole = store.monitor_store.predictions_with_feedback(limit=ROWS, model_name="churn")
    counter = QualityCounter(spec)
    counter.add(whole[spec.feature_names])
    assert window.whole.quality == counter.results()
    labelled = whole.loc[whole.label.notna()]
    expected = model_quality(
        labelled.label,
        labelled.prediction.astype(str),
        pd.DataFrame(list(labelled.probabilities), index=labelled.index),
        spec.classes,
        spec,
    )
    assert window.whole.model_quality == expected
    assert expected is not None and expected.labelled_rows == len(LABELLED)
    assert window.whole.note == "analysed a uniform random sample of 100 of 2000 rows (seed 3)"


def test_the_sample_note_says_what_was_sampled_and_what_was_not(store: Monitoring):
    logged(store)
    spec = schema()
    reference = mixed_table(400, seed=0).drop(columns="churn")
    window = read_window(
        store.monitor_store.window_chunks(limit=ROWS, model_name="churn", chunk_rows=500),
        spec,
        max_rows=150,
        seed=42,
    )
    result = check_sample(
        Reference(reference, pd.Series(["no", "yes"] * 200)),
        window,
        spec,
        max_rows=150,
        build_report=False,
    )
    assert result.current_rows == ROWS and result.analysed_rows == 150 and result.sampled
    assert result.sample_note == (
        "analysed a uniform random sample of 150 of 2000 rows (seed 42); "
        "reference: a uniform random sample of 150 of 400 rows (seed 42); "
        "data quality over all 2000 rows; model quality over all 200 labelled rows"
    )
    assert result.model_quality is not None and result.model_quality.labelled_rows == 200


def test_a_small_window_is_read_whole():
    chunks = [_numbered(0, 30), _numbered(30, 40)]
    spec = schema()
    window = read_window(chunks, spec, max_rows=100, seed=0)
    assert window.extent.rows == 70 and list(window.features.index) == list(range(70))
    assert window.whole.note == "analysed all 70 rows"
    assert window.whole.model_quality is None  # nothing labelled


def test_an_empty_window_reads_as_empty():
    window = read_window([], schema(), max_rows=10, seed=0)
    assert window.extent.rows == 0 and window.extent.start is None
    assert window.features.empty and list(window.features.columns) == schema().feature_names


def test_reservoir_is_uniform_bounded_and_repeatable():
    def sample(seed: int) -> list[int]:
        reservoir = Reservoir(50, seed)
        for start in range(0, 1000, 64):
            positions = range(start, min(start + 64, 1000))  # indexed like the store's chunks
            reservoir.add(pd.DataFrame({"n": positions}, index=positions))
        kept = reservoir.sample()
        assert kept is not None and reservoir.seen == 1000
        return list(kept.n)

    first = sample(1)
    assert len(first) == 50 and len(set(first)) == 50 and first == sorted(first)
    assert sample(1) == first and sample(2) != first
    # uniform: over many seeds every position is kept about 50/1000 of the time
    counts = np.bincount(np.concatenate([sample(s) for s in range(200)]), minlength=1000)
    assert counts.sum() == 200 * 50
    halves = counts[:500].sum(), counts[500:].sum()  # early rows are not favoured, nor late
    assert abs(halves[0] - halves[1]) < 0.1 * counts.sum()


def test_a_regression_window_reads_numbers_and_scores_every_labelled_row(store: Monitoring):
    """A regressor's predictions are JSON numbers and its labels text: read back as numbers,
    RMSE, MAE, R2 and error bias over the labelled rows, whichever chunk they came in."""
    frame = load_diabetes(as_frame=True).frame
    spec = infer_schema(Dataset(frame=frame, target="target", source="test"), Task.REGRESSION)
    features, target = frame.drop(columns="target"), frame["target"].to_numpy()
    predicted = target + np.random.default_rng(0).normal(5.0, 30.0, len(target))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    store.predictions.write_predictions(
        [
            PredictionRecord(
                request_id=f"d{i}",
                row=0,
                created_at=start + timedelta(seconds=i),
                model_name="diabetes",
                model_version="1",
                features=values,
                prediction=float(predicted[i]),
                probabilities=None,
                latency_ms=1.0,
            )
            for i, values in enumerate(features.to_dict("records"))
        ]
    )
    labelled = np.arange(len(target)) % 4 == 0
    store.predictions.record_feedback(
        [(f"d{i}", 0, str(target[i])) for i in np.flatnonzero(labelled)]
    )

    chunks = store.monitor_store.window_chunks(
        limit=len(target), model_name="diabetes", chunk_rows=100
    )
    window = read_window(chunks, spec, max_rows=200, seed=0)
    assert pd.api.types.is_float_dtype(window.predictions) and len(window.predictions) == 200
    quality = window.whole.model_quality
    assert quality is not None and quality.labelled_rows == labelled.sum() == 111
    error = predicted[labelled] - target[labelled]
    truth = target[labelled]
    assert quality.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert quality.metrics["mae"] == pytest.approx(np.mean(np.abs(error)))
    assert quality.metrics["r2"] == pytest.approx(
        1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2)
    )
    assert quality.metrics["error_bias"] == pytest.approx(np.mean(error))


def _numbered(start: int, rows: int) -> pd.DataFrame:
    """A store-like chunk of ``rows`` (at least 25) clean rows indexed from ``start``."""
    table = mixed_table(rows, seed=start).drop(columns="churn")
    table.index = pd.RangeIndex(start, start + rows)
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(table.index, unit="s")
    return table.assign(created_at=created, prediction="yes", probabilities=None, label=None)
