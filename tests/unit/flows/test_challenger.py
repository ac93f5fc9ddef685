"""The live gate: champion and shadow challenger judged on the same labelled live rows.

The decision itself is pure (:func:`mlops_stack.gate.live_decision`); the monitor flow's part
runs on a real embedded registry (two trained versions) and monitoring database, with the shadow
rows written as the predictor writes them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from mlops_stack.gate import live_decision

# --- the decision ----------------------------------------------------------------------------


def decide(champion: float, challenger: float, rows: int = 300, *, metric: str = "roc_auc", **kw):
    options = {"min_improvement": 0.0, "min_labelled": 200} | kw
    return live_decision(
        {metric: champion}, {metric: challenger}, rows, metric=metric, champion_version="1",
        **options,
    )  # fmt: skip


def test_a_higher_roc_auc_wins_and_a_lower_one_keeps_the_champion():
    better = decide(0.80, 0.90)
    assert better.promote
    assert better.reason == (
        "better (roc_auc 0.9000 vs champion v1 0.8000, higher is better) on 300 live labelled rows"
    )
    assert (better.candidate_score, better.champion_score) == (0.90, 0.80)
    worse = decide(0.90, 0.80)
    assert not worse.promote and worse.reason.startswith("worse (roc_auc 0.8000")


def test_a_lower_rmse_wins_and_a_higher_one_keeps_the_champion():
    better = decide(12.0, 10.0, metric="rmse")
    assert better.promote and "lower is better" in better.reason
    assert "on 300 live labelled rows" in better.reason
    assert not decide(10.0, 12.0, metric="rmse").promote


def test_a_tie_keeps_the_champion():
    tie = decide(0.85, 0.85)
    assert not tie.promote and tie.reason.startswith("tie (") and "keeps the champion" in tie.reason
    assert not decide(7.5, 7.5, metric="rmse").promote


def test_better_by_less_than_the_minimum_improvement_keeps_the_champion():
    small = decide(0.80, 0.81, min_improvement=0.02)
    assert not small.promote and "not enough better" in small.reason
    assert decide(0.80, 0.83, min_improvement=0.02).promote


def test_too_few_rows_decide_nothing_even_for_a_clear_winner():
    few = decide(0.50, 0.99, rows=199)
    assert not few.promote
    assert few.reason == (
        "no decision on 199 live labelled rows: 200 needed (MLOPS_LIVE_PROMOTION_MIN_LABELLED)"
    )
    assert decide(0.50, 0.99, rows=200).promote  # the minimum itself is enough


def test_an_undefined_metric_decides_nothing():
    one_class = live_decision(
        {"roc_auc": None}, {"roc_auc": 0.9}, 300,
        metric="roc_auc", min_improvement=0.0, min_labelled=200,
    )  # fmt: skip
    assert not one_class.promote and "roc_auc is undefined on these rows" in one_class.reason
    assert decide(0.8, math.nan).candidate_score is None  # undefined is None, never NaN
    assert not decide(0.8, math.nan).promote


def test_a_regressors_comparison_scores_both_sides_by_error_on_the_same_rows():
    """Labels come back as text, predictions as numbers: both sides are scored with the
    monitor's own quality function, and a lower RMSE wins."""
    import numpy as np
    import pandas as pd

    from mlops_stack.data import Dataset, infer_schema
    from mlops_stack.flows.challenger import compare
    from mlops_stack.flows.parameters import LivePromotionOptions
    from mlops_stack.monitoring_db.window_frames import Answers, ShadowPairs
    from mlops_stack.names import Task

    truth = np.arange(40, dtype=float)
    frame = pd.DataFrame({"x": truth, "y": truth})
    schema = infer_schema(Dataset(frame=frame, target="y", source="test"), Task.REGRESSION)
    pairs = ShadowPairs(
        shadow_rows=50,
        labels=pd.Series([str(v) for v in truth]),
        champion=Answers(pd.Series(truth + 10.0), None),  # off by 10: RMSE 10
        challenger=Answers(pd.Series(truth - 2.0), None),  # off by 2: RMSE 2
    )
    options = LivePromotionOptions(min_labelled=40)
    comparison = compare(pairs, schema, version="2", champion_version="1", options=options)
    assert comparison.metric == "rmse" and not comparison.higher_is_better
    assert comparison.champion["rmse"] == pytest.approx(10.0)
    assert comparison.challenger["rmse"] == pytest.approx(2.0)
    assert comparison.challenger["error_bias"] == pytest.approx(-2.0)
    assert comparison.promote and comparison.labelled_rows == 40
    assert comparison.decision == (
        "better (rmse 2.0000 vs champion v1 10.0000, lower is better) on 40 live labelled rows"
    )
    swapped = ShadowPairs(50, pairs.labels, pairs.challenger, pairs.champion)
    kept = compare(swapped, schema, version="2", champion_version="1", options=options)
    assert not kept.promote and kept.decision.startswith("worse (rmse 10.0000")
    few = compare(
        pairs, schema, version="2", champion_version="1",
        options=LivePromotionOptions(min_labelled=41),
    )  # fmt: skip
    assert not few.promote and few.decision.startswith("no decision on 40 live labelled rows")


# --- the rows compared -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    """A migrated monitoring database on SQLite (tests/integration/flows/test_challenger.py
    runs the same tests on PostgreSQL)."""
    from tests.support.monitoring import Monitoring

    db = Monitoring(f"sqlite:///{tmp_path / 'monitoring.db'}")
    db.migrate()
    yield db
    db.dispose()


def _record(i: int, version: str, *, shadow: bool, model: str = "m", numeric: bool = False):
    from mlops_stack.monitoring_db.records import PredictionRecord

    answer = 100 + i if shadow else i  # the challenger's answers are told apart by +100
    return PredictionRecord(
        request_id=f"{model}-{i}",
        row=0,
        created_at=START + timedelta(seconds=i),
        model_name=model,
        model_version=version,
        features={} if shadow else {"x": float(i)},
        prediction=answer + 0.5 if numeric else answer,
        probabilities=None if numeric else {"a": answer / 1000, "b": 1 - answer / 1000},
        latency_ms=1.0,
        shadow=shadow,
    )


START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _write(store, *, numeric: bool = False) -> None:
    """Rows 0-9 of model m by v1; v2 answered rows whose number is not a multiple of 3, v3
    row 9; labels on even rows. Model n: the same keys' shapes, all answered and labelled."""
    records = [_record(i, "1", shadow=False, numeric=numeric) for i in range(10)]
    records += [_record(i, "2", shadow=True, numeric=numeric) for i in range(10) if i % 3]
    records += [_record(9, "3", shadow=True, numeric=numeric)]
    for i in range(10):
        records += [
            _record(i, "1", shadow=False, model="n"),
            _record(i, "2", shadow=True, model="n"),
        ]
    store.predictions.write_predictions(records)
    store.predictions.record_feedback(
        [(f"{m}-{i}", 0, f"L{i}") for m in "mn" for i in range(0, 10, 2)]
    )


def test_shadow_pairs_are_the_labelled_window_rows_both_versions_answered(store):
    _write(store)
    pairs = store.monitor_store.shadow_pairs(
        None, 6, model_name="m", challenger_version="2", chunk_rows=1
    )
    # the window: rows 4-9; v2 answered 4, 5, 7, 8 of them; 4 and 8 are labelled
    assert (pairs.shadow_rows, pairs.labelled_rows) == (4, 2)
    order = pairs.labels.argsort().to_numpy()
    assert list(pairs.labels.iloc[order]) == ["L4", "L8"]
    assert list(pairs.champion.predictions.iloc[order]) == [4, 8]  # row for row
    assert list(pairs.challenger.predictions.iloc[order]) == [104, 108]
    assert list(pairs.champion.probabilities["a"].iloc[order]) == [0.004, 0.008]
    assert list(pairs.challenger.probabilities["b"].iloc[order]) == [0.896, 0.892]

    since = store.monitor_store.shadow_pairs(
        START + timedelta(seconds=6.5), None, model_name="m", challenger_version="2"
    )
    assert (since.shadow_rows, list(since.labels)) == (2, ["L8"])  # rows 7, 8, 9
    served = store.monitor_store.shadow_pairs(
        None, 6, model_name="m", challenger_version="2", champion_version="1"
    )
    assert (served.shadow_rows, served.labelled_rows) == (4, 2)
    older = (
        store.monitor_store.shadow_pairs(  # rows another champion served are no answers of this one
            None, 6, model_name="m", challenger_version="2", champion_version="7"
        )
    )
    assert (older.shadow_rows, older.labelled_rows) == (0, 0)
    other = store.monitor_store.shadow_pairs(None, 6, model_name="m", challenger_version="3")
    assert (other.shadow_rows, other.labelled_rows) == (1, 0)
    assert other.champion.probabilities is None
    assert (
        store.dashboard_reads.shadow_rows("m", "2") == 6
        and store.dashboard_reads.shadow_rows("n", "2") == 10
    )


def test_a_regressors_pairs_are_numbers_without_probabilities(store):
    _write(store, numeric=True)
    pairs = store.monitor_store.shadow_pairs(None, None, model_name="m", challenger_version="2")
    assert (pairs.shadow_rows, pairs.labelled_rows) == (6, 3)  # labelled: 2, 4, 8
    assert sorted(pairs.challenger.predictions) == [102.5, 104.5, 108.5]
    assert pairs.champion.probabilities is None and pairs.challenger.probabilities is None


def test_the_latest_comparison_is_the_newest_run_that_stored_one(store):
    from mlops_stack.monitoring_db import MonitorRunRow

    assert store.monitor_store.latest_comparison("m") is None

    def run(challenger=None):
        row = MonitorRunRow(
            started_at=START, finished_at=START, model_name="m", window_rows=10,
            analysed_rows=10, status="ok", reason="",
        )  # fmt: skip
        if challenger is not None:
            row.challenger = challenger
        return store.monitor_store.save_run(row, [])

    compared = run({"version": "2", "labelled_rows": 300})
    run()  # a later run without a challenger
    found = store.monitor_store.latest_comparison("m")
    assert found is not None and found[0].id == compared
    assert found[1] == {"version": "2", "labelled_rows": 300}
    assert store.monitor_store.latest_comparison("n") is None
