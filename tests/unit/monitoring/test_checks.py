"""The monitoring checks: drift, data quality, model quality, sampling and the HTML report.

Each column's drift test (K-S for numbers, a two-sample chi-square for categories) runs at
alpha / m for m columns tested (Bonferroni), and a column drifts only when it also moved by at
least the effect floor (``drift.DriftRule``). So "no feature drifted" is a meaningful assertion
on a clean window: benchmarks/drift.py measures clean runs flagging anything at all in at most
``alpha`` of runs. Clean windows come from ``synthetic.RowGenerator`` (fresh rows, never
repeated) where the test is about the rule; bootstraps and splits of the table still serve where
the rows' provenance does not matter.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from mlops_stack.data import Dataset, DatasetSchema, infer_schema
from mlops_stack.monitoring import checks, drift
from mlops_stack.monitoring import quality as qualitymod
from mlops_stack.monitoring.checks import (
    Current,
    Reference,
    Sample,
    WholeWindow,
    check_sample,
    check_window,
)
from mlops_stack.monitoring.quality import ModelQuality, QualityCounter
from mlops_stack.monitoring.status import Status, Thresholds, classify
from mlops_stack.names import Task
from mlops_stack.preprocessing import build_preprocessor
from mlops_stack.synthetic import RowGenerator
from mlops_stack.training import build_candidates, evaluate
from tests.support.tables import mixed_table

SHIFTED = ["mean radius", "worst texture"]


@cache
def _cancer() -> tuple[pd.DataFrame, pd.Series, DatasetSchema]:
    frame = load_breast_cancer(as_frame=True).frame
    schema = infer_schema(Dataset(frame=frame, target="target", source="test"))
    return frame.drop(columns="target"), frame["target"], schema


# The drift tests use eleven of the thirty columns: the same behaviour to check (clean windows
# quiet, shifted features found and first) at a third of Evidently's per-column cost.
DRIFT_COLUMNS = [
    *(f"mean {name}" for name in (
        "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
        "concave points", "symmetry", "fractal dimension",
    )),
    "worst texture",
]  # fmt: skip


@cache
def _cancer_drift_columns() -> tuple[pd.DataFrame, DatasetSchema]:
    frame = load_breast_cancer(as_frame=True).frame[[*DRIFT_COLUMNS, "target"]]
    schema = infer_schema(Dataset(frame=frame, target="target", source="test"))
    return frame.drop(columns="target"), schema


def cancer() -> tuple[pd.DataFrame, DatasetSchema]:
    """Breast-cancer features for the drift tests (a fresh copy: tests shift them), and schema."""
    features, schema = _cancer_drift_columns()
    return features.copy(), schema


def bootstrap(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """Rows drawn with replacement: a clean sample of any size from the table's distribution."""
    positions = np.random.default_rng(seed).integers(0, len(frame), rows)
    return frame.iloc[positions].reset_index(drop=True)


def shift(frame: pd.DataFrame, columns: list[str], stds: float = 2.0) -> pd.DataFrame:
    shifted = frame.copy()
    for column in columns:
        shifted[column] = shifted[column] + stds * frame[column].std()
    return shifted


def mixed(rows: int, seed: int) -> tuple[pd.DataFrame, DatasetSchema]:
    """``conftest.mixed_table`` features (numeric, categorical, missing values) and schema."""
    table = mixed_table(rows, seed)
    schema = infer_schema(Dataset(frame=table, target="churn", source="test"))
    return table.drop(columns="churn"), schema


def shuffled_split(windows: int, window_rows: int) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The shuffled breast-cancer table as a reference and consecutive windows after it."""
    features, _ = cancer()
    features = features.sample(frac=1.0, random_state=0).reset_index(drop=True)
    start = len(features) - windows * window_rows
    chunks = [features.iloc[start + i * window_rows :][:window_rows] for i in range(windows)]
    return features.iloc[:start], chunks


# --- drift ---------------------------------------------------------------------------------


def test_clean_bootstrap_windows_raise_no_drift():
    features, schema = cancer()
    reference = bootstrap(features, 5000, seed=0)
    for seed in (1, 2, 3):
        result = check_window(
            Reference(reference),
            Current(bootstrap(features, 2000, seed)),
            schema,
            build_report=False,
        )
        assert {f.method for f in result.features} == {drift.KS_TEST}
        assert result.drifted_features() == []
        assert result.drift_share == 0.0


def test_clean_mixed_windows_raise_no_drift():
    reference, schema = mixed(5000, seed=0)
    for seed in (1, 2, 3):
        window, _ = mixed(2000, seed)
        result = check_window(Reference(reference), Current(window), schema, build_report=False)
        assert {f.feature: f.kind for f in result.features} == {
            "age": "numeric",
            "income": "numeric",
            "city": "categorical",
            "plan": "categorical",
        }
        assert result.drifted_features() == []


def test_clean_split_flags_no_feature_once_corrected():
    """Uncorrected, 11 K-S tests at 0.05 would flag some feature of a clean window in up to
    1 - 0.95**11 = 43 % of runs; at 0.05 / 11 each, in at most 5 %."""
    reference, windows = shuffled_split(windows=3, window_rows=100)
    _, schema = cancer()
    for window in windows:
        result = check_window(Reference(reference), Current(window), schema, build_report=False)
        assert {f.method for f in result.features} == {drift.KS_TEST}
        assert result.current_rows == result.analysed_rows == 100
        assert result.drift_rule == drift.DriftRule(0.05, 0.1, tests=len(DRIFT_COLUMNS))
        assert all(f.threshold == pytest.approx(0.05 / 11) for f in result.features)
        assert result.drifted_features() == []


def test_shifted_features_are_the_drifted_ones_and_come_first():
    features, schema = cancer()
    reference = bootstrap(features, 5000, seed=0)
    window = shift(bootstrap(features, 2000, seed=1), SHIFTED)
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    assert sorted(result.drifted_features()) == sorted(SHIFTED)
    assert {f.feature for f in result.features[:2]} == set(SHIFTED)
    assert result.drift_share == pytest.approx(2 / len(DRIFT_COLUMNS))
    assert all(f.severity > 0 for f in result.features[:2])
    assert all(f.severity < 0 for f in result.features[2:])


def test_shifted_features_lead_with_p_value_tests():
    """A +2 std shift gives p-values far below any clean feature's, whatever else is flagged."""
    reference, windows = shuffled_split(windows=1, window_rows=100)
    _, schema = cancer()
    result = check_window(
        Reference(reference), Current(shift(windows[0], SHIFTED)), schema, build_report=False
    )
    leaders = result.features[:2]
    assert {f.feature for f in leaders} == set(SHIFTED)
    assert all(f.drifted and f.score < 1e-10 for f in leaders)


def test_changed_category_mix_and_shifted_number_are_detected():
    reference, schema = mixed(5000, seed=0)
    window, _ = mixed(2000, seed=1)
    window = shift(window, ["age"])
    rng = np.random.default_rng(5)
    window["plan"] = rng.choice(["basic", "plus", "premium"], len(window), p=[0.2, 0.3, 0.5])
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    assert sorted(result.drifted_features()) == ["age", "plan"]
    assert {f.feature for f in result.features[:2]} == {"age", "plan"}
    plan = next(f for f in result.features if f.feature == "plan")
    assert plan.kind == "categorical" and plan.method == drift.CHI_SQUARE_TEST
    assert plan.effect == pytest.approx(0.3, abs=0.03)  # shares 50/30/20 -> 20/30/50


def test_prediction_drift_compares_predicted_class_mixes():
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(200, seed=1)
    balanced = pd.Series(["no", "yes"] * 200)
    one_class = pd.Series(["yes"] * 200)
    drifted = check_window(
        Reference(reference, predictions=balanced),
        Current(window, predictions=one_class),
        schema,
        build_report=False,
    ).prediction_drift
    assert drifted is not None and drifted.drifted
    assert drifted.kind == "categorical"
    steady = check_window(
        Reference(reference, predictions=balanced),
        Current(window, predictions=pd.Series(["yes", "no"] * 100)),
        schema,
        build_report=False,
    ).prediction_drift
    assert steady is not None and not steady.drifted
    alone = check_window(
        Reference(reference), Current(window, predictions=one_class), schema, build_report=False
    )
    assert alone.prediction_drift is None


# --- drift you can trust: fresh rows, the correction and the effect floor -------------------


@cache
def _generator() -> tuple[RowGenerator, DatasetSchema]:
    """Fresh rows from the whole breast-cancer table (30 features), and its schema."""
    frame = load_breast_cancer(as_frame=True).frame
    schema = infer_schema(Dataset(frame=frame, target="target", source="test"))
    return RowGenerator.fit(frame, target="target"), schema


def fresh(rows: int, seed: int, shifts: dict[str, float] | None = None) -> pd.DataFrame:
    generator, _ = _generator()
    return generator.sample(rows, seed=seed, shifts=shifts).drop(columns="target")


@pytest.mark.parametrize("rows", [1_000, 5_000])
def test_clean_fresh_rows_drift_nowhere(rows: int):
    _, schema = _generator()
    reference = fresh(455, seed=0)  # the size of the built-in table's training split
    for seed in (1, 2):
        result = check_window(
            Reference(reference), Current(fresh(rows, seed=seed)), schema, build_report=False
        )
        assert result.drift_rule is not None and result.drift_rule.tests == 30
        assert result.drifted_features() == [], [
            (f.feature, f.score, f.effect) for f in result.features[:3]
        ]
        # significance is what keeps clean windows quiet: noise alone may pass the floor
        assert not any(f.significant for f in result.features)


def test_a_shift_flags_the_feature_and_only_features_it_moves():
    """A 1-std shift of ``worst radius`` moves each Y by corr * 1 std (the generator's
    population shift): flagged are the feature and features it moved. The measured effect has
    sampling noise (a few hundredths of a std here), so a feature moved just under the 0.1
    floor can pass it: ``worst fractal dimension``, moved 0.093 std, is flagged with seed 1.
    Every flagged feature moved by at least half the floor (docs/monitoring.md's rule), and
    every feature moved by 0.3 std or more is flagged."""
    generator, schema = _generator()
    moved = generator.movement({"worst radius": 1.0}).abs()
    reference = fresh(2_000, seed=0)
    for seed in (1, 2):
        window = fresh(1_000, seed=seed, shifts={"worst radius": 1.0})
        result = check_window(Reference(reference), Current(window), schema, build_report=False)
        flagged = set(result.drifted_features())
        assert "worst radius" in flagged
        unrelated = {f: round(moved[f], 3) for f in flagged if moved[f] < 0.05}
        assert unrelated == {}, unrelated  # every flagged feature moved by at least 0.05 std
        assert set(moved[moved >= 0.3].index) <= flagged  # and every clear move is flagged
        assert result.features[0].effect is not None and result.features[0].effect > 0.3


def test_a_tiny_shift_on_a_huge_window_is_significant_but_not_drift():
    """0.05 std on 20,000 rows a side: K-S is sure it moved, the effect floor says it does not
    matter (the drift a large window would otherwise report on every run)."""
    _, schema = _generator()
    reference = fresh(20_000, seed=0)
    window = fresh(20_000, seed=1)
    column = "worst area"
    window[column] += 0.05 * reference[column].std()
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    tested = next(f for f in result.features if f.feature == column)
    assert tested.significant and tested.score <= tested.threshold, tested
    assert tested.effect is not None and 0.03 < tested.effect < 0.1
    assert not tested.drifted and result.drifted_features() == []
    floorless = check_window(
        Reference(reference), Current(window), schema, build_report=False, drift_min_effect=0.0
    )
    assert floorless.drifted_features() == [column]


def test_the_status_names_the_correction():
    _, schema = _generator()
    reference = fresh(455, seed=0)
    window = fresh(1_000, seed=3)
    window["mean texture"] += reference["mean texture"].std()  # this column alone
    predictions = pd.Series(["0", "1"] * 500)
    result = check_window(
        Reference(reference, pd.Series(["0", "1"] * 227 + ["0"])),
        Current(window, predictions=predictions),
        schema,
        build_report=False,
    )
    status = classify(result, {}, Thresholds(0.0, 0.3, 0.05))
    assert status.status == "warning", status.reason
    assert result.drifted_features() == ["mean texture"]
    assert "corrected for 31 tests at alpha 0.05: p <= 0.0016 and effect >= 0.1" in status.reason
    assert "warning from any drifted feature" in status.reason
    clean = check_window(
        Reference(reference), Current(fresh(1_000, seed=4)), schema, build_report=False
    )
    ok = classify(clean, {}, Thresholds(0.0, 0.3, 0.05))
    assert ok.status == "ok", ok.reason
    assert ok.reason.startswith("0 of 30 features drifted (0%) (corrected for 30 tests")


def test_prediction_drift_alone_warns_and_names_the_correction():
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(400, seed=0)  # the same rows: no feature moved
    result = check_window(
        Reference(reference, predictions=pd.Series(["no", "yes"] * 200)),
        Current(window, predictions=pd.Series(["yes"] * 300 + ["no"] * 100)),
        schema,
        build_report=False,
    )
    assert result.drifted_features() == []
    status = classify(result, {}, Thresholds(0.0, 0.3, 0.05))
    assert status.status == "warning" and status.conditions == {}
    assert "predicted classes drifted (chi-square two-sample p_value" in status.reason
    assert "effect 0.25" in status.reason and "corrected for 5 tests at alpha 0.05" in status.reason


def test_two_sample_chi_square_holds_its_level_when_the_window_outgrows_the_reference():
    """A goodness-of-fit test against the reference's shares (Evidently's ``chisquare``) takes
    them as exact: 455 reference rows against 5000 window rows, a 2-class column at alpha
    0.05/31 false-alarms in about 35 % of clean runs. The two-sample test keeps to its level."""
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(400):
        reference = pd.Series(rng.choice(["a", "b"], 455, p=[0.63, 0.37]))
        current = pd.Series(rng.choice(["a", "b"], 5000, p=[0.63, 0.37]))
        alarms += drift.chi_square_two_sample(reference, current) <= 0.05 / 31
    assert alarms <= 4  # expected 0.6; a goodness-of-fit test: ~140


def test_rare_categories_are_pooled_before_the_chi_square():
    reference = pd.Series(["a"] * 500 + ["b"] * 500 + ["c", "d"])
    current = pd.Series(["a"] * 50 + ["b"] * 50 + ["e"])
    pooled = drift._pool_rare(
        pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0)
    )
    assert len(pooled) == 3 and pooled.sum().tolist() == [1002, 101]  # a, b, (c, d, e)
    assert drift.chi_square_two_sample(reference, current) > 0.05
    assert drift.chi_square_two_sample(pd.Series(["a"] * 9), pd.Series(["a"] * 5)) == 1.0
    assert drift.total_variation(pd.Series(["a", "b"]), pd.Series(["a", "a"])) == 0.5


def test_the_evidently_report_runs_the_same_tests_at_the_same_thresholds():
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(200, seed=1)
    result = check_window(
        Reference(reference, predictions=pd.Series(["no", "yes"] * 200)),
        Current(window, predictions=pd.Series(["yes"] * 150 + ["no"] * 50)),
        schema,
    )
    exported = result.snapshot.dict()
    reported = {
        m["config"]["column"]: (m["config"]["threshold"], float(m["value"]))
        for m in exported["metrics"]
        if m["config"].get("type", "").endswith(":ValueDrift")
    }
    ours = [*result.features, result.prediction_drift]
    assert len(reported) == len(ours) == 5
    for f in ours:
        assert reported[f.feature] == (pytest.approx(f.threshold), pytest.approx(f.score)), f


# --- data quality --------------------------------------------------------------------------


def quality_window() -> tuple[pd.DataFrame, pd.DataFrame, DatasetSchema]:
    """Reference rows reused as the window (so all in range), then damaged on purpose."""
    reference, schema = mixed(400, seed=0)
    window = reference.copy()
    window.loc[0:4, "age"] = 200.0  # 5 above the training maximum
    window.loc[5:6, "age"] = 1.0  # 2 below the minimum
    window["income"] = window["income"].fillna(window["income"].median())
    window.loc[100:139, "income"] = np.nan  # 40 of 400 missing
    unseen = ["berlin"] * 6 + ["rome"] * 5 + ["madrid"] * 4 + ["oslo"] * 3 + ["wien"] * 2
    window.loc[200 : 200 + len(unseen), "city"] = [*unseen, "praha"]  # 21 unseen, 6 distinct
    return reference, window, schema


@pytest.mark.parametrize("max_rows", [50_000, 50])
def test_data_quality_counts_what_training_never_saw_over_every_row(max_rows: int):
    reference, window, schema = quality_window()
    result = check_window(
        Reference(reference), Current(window), schema, max_rows=max_rows, build_report=False
    )
    quality = {q.feature: q for q in result.quality}
    assert quality["age"].out_of_range == 7
    assert quality["income"].out_of_range == 0
    assert quality["income"].missing_share == pytest.approx(0.1)
    assert quality["city"].unseen_categories == 21
    assert quality["city"].unseen_examples == ["berlin", "rome", "madrid", "oslo", "wien"]
    assert quality["plan"].unseen_categories == 0 and quality["plan"].unseen_examples == []
    assert quality["plan"].missing_share == 0.0


def test_a_column_empty_in_the_window_is_reported_not_tested():
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(200, seed=1)
    window["income"] = np.nan
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    assert "income" not in {f.feature for f in result.features}
    assert next(q for q in result.quality if q.feature == "income").missing_share == 1.0


# --- model quality -------------------------------------------------------------------------


@cache
def _fitted(table: str):
    """A fitted logistic regression, its features, labels and schema (breast cancer or iris)."""
    if table == "cancer":
        features, labels, schema = _cancer()
    else:
        frame = load_iris(as_frame=True).frame
        schema = infer_schema(Dataset(frame=frame, target="target", source="test"))
        features, labels = frame.drop(columns="target"), frame["target"]
    model = build_candidates(schema, seed=0, names=["logistic_regression"])["logistic_regression"]
    model.fit(features, labels)
    return model, features, labels, schema


def model_quality(
    table: str,
    labels: pd.Series | None,
    predictions: pd.Series | None = None,
    *,
    through_check_window: bool = False,
) -> ModelQuality | None:
    """Model quality of the fitted model on its own table against ``labels``.

    Computed by ``qualitymod.model_quality`` directly (milliseconds), or through ``check_window``
    as the monitor does (seconds: it runs the drift tests on every feature as well).
    """
    model, features, _, schema = _fitted(table)
    predicted = pd.Series(model.predict(features)) if predictions is None else predictions
    probabilities = pd.DataFrame(model.predict_proba(features), columns=model.classes_)
    if not through_check_window:
        return qualitymod.model_quality(labels, predicted, probabilities, None, schema)
    result = check_window(
        Reference(features),
        Current(features, predictions=predicted, labels=labels, probabilities=probabilities),
        schema,
        build_report=False,
    )
    return result.model_quality


@pytest.mark.parametrize("table", ["cancer", "iris"])
def test_model_quality_scores_like_training_evaluate(table: str):
    model, features, labels, _ = _fitted(table)
    expected = evaluate(model, features, labels)
    quality = model_quality(table, labels.astype(str), through_check_window=True)
    assert quality is not None and quality.labelled_rows == len(labels)
    assert set(quality.metrics) == {"accuracy", "f1", "roc_auc"}
    assert quality.metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert quality.metrics["f1"] == pytest.approx(expected["f1"])
    assert quality.metrics["roc_auc"] == pytest.approx(expected["roc_auc"])


def test_labels_agreeing_with_predictions_score_perfectly():
    model, features, _, _ = _fitted("cancer")
    predicted = pd.Series(model.predict(features))
    quality = model_quality("cancer", predicted.astype(str))
    assert quality is not None
    assert quality.metrics == {"accuracy": 1.0, "f1": 1.0, "roc_auc": 1.0}


def test_flipped_labels_score_low():
    model, features, _, _ = _fitted("cancer")
    flipped = (1 - pd.Series(model.predict(features))).astype(str)
    quality = model_quality("cancer", flipped)
    assert quality is not None
    assert quality.get("accuracy") == 0.0 and quality.get("f1") == 0.0
    roc_auc = quality.get("roc_auc")
    assert roc_auc is not None and roc_auc < 0.05


def test_only_labelled_rows_count():
    _, _, labels, _ = _fitted("cancer")
    partial = labels.astype(str).where(np.arange(len(labels)) % 3 == 0)  # NaN on 2 rows of 3
    quality = model_quality("cancer", partial)
    assert quality is not None and quality.labelled_rows == (len(labels) + 2) // 3


def test_no_labels_means_no_model_quality():
    _, _, labels, _ = _fitted("cancer")
    assert model_quality("cancer", None) is None
    assert model_quality("cancer", pd.Series([None] * len(labels), dtype=object)) is None


def test_one_class_of_labels_has_no_roc_auc():
    model, features, _, _ = _fitted("cancer")
    predicted = pd.Series(model.predict(features))
    only_positive = predicted.astype(str).where(predicted == 1)
    quality = model_quality("cancer", only_positive)
    assert quality is not None
    assert quality.get("accuracy") == 1.0 and quality.get("roc_auc") is None


# --- sampling and the report ---------------------------------------------------------------


def test_large_windows_are_sampled_and_say_so():
    features, schema = cancer()
    window = bootstrap(features, 3000, seed=1)
    first = check_window(
        Reference(features), Current(window), schema, max_rows=600, build_report=False
    )
    assert first.sampled and first.analysed_rows == 600 and first.current_rows == 3000
    assert first.reference_rows == len(features) == 569  # under max_rows: all of it
    assert first.sample_note == (
        "analysed a uniform random sample of 600 of 3000 rows (seed 42); "
        "data quality over all 3000 rows"
    )
    again = check_window(
        Reference(features), Current(window), schema, max_rows=600, build_report=False
    )
    assert [(f.feature, f.score) for f in again.features] == [
        (f.feature, f.score) for f in first.features
    ]
    both = check_window(
        Reference(window), Current(features), schema, max_rows=500, seed=7, build_report=False
    )
    assert both.analysed_rows == 500 and both.reference_rows == 500
    assert "500 of 569 rows (seed 7)" in both.sample_note
    assert "reference: a uniform random sample of 500 of 3000 rows (seed 7)" in both.sample_note


def test_small_windows_are_analysed_whole():
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(200, seed=1)
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    assert not result.sampled and result.analysed_rows == 200
    assert result.sample_note == "analysed all 200 rows"
    assert result.snapshot is None
    with pytest.raises(ValueError, match="build_report=False"):
        result.save_html("unused.html")


def test_save_html_writes_the_evidently_report(tmp_path: Path):
    reference, schema = mixed(400, seed=0)
    window, _ = mixed(200, seed=1)
    result = check_window(
        Reference(reference, predictions=pd.Series(["no", "yes"] * 200)),
        Current(window, predictions=pd.Series(["yes"] * 200)),
        schema,
    )
    path = tmp_path / "drift.html"
    result.save_html(path)
    html = path.read_text(encoding="utf-8")
    assert len(html) > 10_000 and "<html" in html.lower()


def test_a_sample_reports_the_quality_counted_over_its_whole_window():
    reference, window, schema = quality_window()
    counter = QualityCounter(schema)
    counter.add(window)
    labelled = ModelQuality(40, {"accuracy": 0.9, "f1": 0.8, "roc_auc": None})
    whole = WholeWindow(400, counter.results(), labelled, "analysed a sample of 100 of 400 rows")
    sample = Sample(window.iloc[::4], None, whole)
    result = check_sample(Reference(reference), sample, schema, max_rows=50, build_report=False)
    assert result.current_rows == 400 and result.analysed_rows == 50 and result.sampled
    assert result.quality == whole.quality and result.model_quality is labelled
    assert result.sample_note == (
        "analysed a sample of 100 of 400 rows; "
        "analysed a uniform random sample of 50 of 100 sampled rows (seed 42); "
        "reference: a uniform random sample of 50 of 400 rows (seed 42); "
        "data quality over all 400 rows; model quality over all 40 labelled rows"
    )


# --- regression ----------------------------------------------------------------------------


# Three of the diabetes table's ten features carry most of a linear fit (R2 0.48 against 0.52
# with all ten) at a third of Evidently's per-column cost.
DIABETES_COLUMNS = ["bmi", "bp", "s5"]


@cache
def _diabetes() -> tuple[pd.DataFrame, pd.Series, DatasetSchema, np.ndarray]:
    """scikit-learn's diabetes table, its regression schema, and a fitted Ridge's predictions.

    The Ridge sits in a Pipeline behind the stack's own preprocessing, like every candidate.
    """
    frame = load_diabetes(as_frame=True).frame[[*DIABETES_COLUMNS, "target"]]
    schema = infer_schema(Dataset(frame=frame, target="target", source="test"), Task.REGRESSION)
    features, target = frame.drop(columns="target"), frame["target"]
    model = Pipeline([("prep", build_preprocessor(schema, scale=True)), ("model", Ridge(1.0))])
    model.fit(features, target)
    return features, target, schema, model.predict(features)


def diabetes() -> tuple[pd.DataFrame, pd.Series, DatasetSchema, np.ndarray]:
    features, target, schema, predicted = _diabetes()
    return features.copy(), target.copy(), schema, predicted.copy()


def test_regression_quality_matches_numpy_on_the_labelled_rows():
    features, target, schema, predicted = diabetes()
    # labels come back from /feedback as text; every third row has none
    labels = target.map(repr).where(np.arange(len(target)) % 3 != 0)
    result = check_window(
        Reference(features),
        Current(features, predictions=pd.Series(predicted), labels=labels),
        schema,
        build_report=False,
    )
    quality = result.model_quality
    assert quality is not None and quality.task == Task.REGRESSION
    kept = labels.notna().to_numpy()
    truth, guess = target.to_numpy()[kept], predicted[kept]
    error = guess - truth
    assert quality.labelled_rows == kept.sum() == 294
    assert set(quality.metrics) == {"rmse", "mae", "r2", "error_bias"}
    assert quality.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert quality.metrics["mae"] == pytest.approx(np.mean(np.abs(error)))
    r2 = 1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2)
    assert quality.metrics["r2"] == pytest.approx(r2)
    assert quality.metrics["error_bias"] == pytest.approx(np.mean(error))
    assert 40 < quality.metrics["rmse"] < 70 and 0.3 < r2 < 0.7  # a real fit, not a constant


def test_regression_figures_agree_with_evidentlys_regression_report(tmp_path: Path):
    """The same rows through Evidently's regression preset: the same RMSE, MAE, R2, and its
    mean error is our error bias (prediction - label); its HTML report is saved."""
    features, target, schema, predicted = diabetes()
    result = check_window(
        Reference(features),
        Current(features, predictions=pd.Series(predicted), labels=target.astype(str)),
        schema,
    )
    assert result.model_quality is not None and result.quality_snapshot is not None
    values = {
        m["config"]["type"].rpartition(":")[2]: m["value"]
        for m in result.quality_snapshot.dict()["metrics"]
    }
    ours = result.model_quality.metrics
    assert values["RMSE"] == pytest.approx(ours["rmse"])
    assert values["MAE"]["mean"] == pytest.approx(ours["mae"])
    assert values["R2Score"] == pytest.approx(ours["r2"])
    assert values["MeanError"]["mean"] == pytest.approx(ours["error_bias"], abs=1e-9)
    path = tmp_path / "quality.html"
    result.save_quality_html(path)
    assert path.stat().st_size > 10_000 and "<html" in path.read_text(encoding="utf-8").lower()
    unlabelled = check_window(
        Reference(features), Current(features, predictions=pd.Series(predicted)), schema
    )
    assert unlabelled.quality_snapshot is None and unlabelled.snapshot is not None
    sampled = check_window(
        Reference(features),
        Current(features, predictions=pd.Series(predicted), labels=target.astype(str)),
        schema,
        max_rows=100,
    )
    assert sampled.quality_snapshot is not None
    assert sampled.model_quality is not None and sampled.model_quality.labelled_rows == 442
    assert sampled.sample_note.endswith(
        "; regression report: a uniform random sample of 100 of 442 labelled rows (seed 42)"
    )


def test_regression_error_bias_says_which_way_the_model_errs():
    _, target, schema, _ = diabetes()
    over = qualitymod.model_quality(target.astype(str), target + 10.0, None, None, schema)
    assert over is not None
    assert over.metrics["error_bias"] == pytest.approx(10.0)
    assert over.metrics["rmse"] == pytest.approx(10.0) and over.metrics["mae"] == 10.0
    under = qualitymod.model_quality(target.astype(str), target - 4.0, None, None, schema)
    assert under is not None and under.metrics["error_bias"] == pytest.approx(-4.0)


def test_regression_labels_that_are_no_numbers_are_left_out():
    _, target, schema, predicted = diabetes()
    labels = target.astype(str)
    labels.iloc[:5] = "n/a"
    quality = qualitymod.model_quality(labels, pd.Series(predicted), None, None, schema)
    assert quality is not None and quality.labelled_rows == len(target) - 5
    one = qualitymod.model_quality(labels.iloc[5:6], pd.Series(predicted[5:6]), None, None, schema)
    assert one is not None and one.labelled_rows == 1 and one.metrics["r2"] is None


def _regression_drift(shift_stds: float, seed: int) -> drift.FeatureDrift | None:
    """Prediction drift of the Ridge between 5000 reference and 2000 window rows (bootstraps
    of the diabetes table, so Evidently uses Wasserstein distance), window outputs shifted."""
    features, _, schema, predicted = diabetes()
    outputs = pd.Series(predicted)
    reference = bootstrap(features.assign(_p=outputs), 5000, seed=0)
    window = bootstrap(features.assign(_p=outputs), 2000, seed=seed)
    moved = window["_p"] + shift_stds * outputs.std()
    return check_window(
        Reference(reference.drop(columns="_p"), predictions=reference["_p"]),
        Current(window.drop(columns="_p"), predictions=moved),
        schema,
        build_report=False,
    ).prediction_drift


def test_regression_prediction_drift_is_a_numeric_test_that_finds_a_shift():
    drifted = _regression_drift(1.0, seed=1)
    assert drifted is not None and drifted.drifted
    assert drifted.kind == "numeric" and drifted.method == drift.KS_TEST
    assert drifted.score < 1e-10
    assert drifted.effect is not None and drifted.effect > 0.5  # one std: about 1 in stds
    for seed in (1, 2):  # clean windows: the same model on the same distribution
        steady = _regression_drift(0.0, seed=seed)
        assert steady is not None and not steady.drifted, steady
        assert steady.effect is not None and steady.effect < 0.1


def test_regression_prediction_drift_with_few_reference_rows():
    """A regressor's output is a number: K-S, whatever the reference's size."""
    features, _, schema, predicted = diabetes()
    reference, window = features.iloc[:300], features.iloc[300:]
    outputs = pd.Series(predicted)
    result = check_window(
        Reference(reference, predictions=outputs.iloc[:300]),
        Current(window, predictions=outputs.iloc[300:] + outputs.std()),
        schema,
        build_report=False,
    )
    assert result.prediction_drift is not None
    assert result.prediction_drift.method == drift.KS_TEST and result.prediction_drift.drifted


# --- status --------------------------------------------------------------------------------

LIMITS = Thresholds(warning_share=0.1, drift_share=0.3, quality_drop=0.05, min_labelled=50)


def quality_only(quality: ModelQuality | None) -> checks.CheckResult:
    """A check result with model quality and nothing drifted: what the status judges of it."""
    return checks.CheckResult(
        current_rows=442,
        analysed_rows=442,
        reference_rows=442,
        sampled=False,
        sample_note="",
        features=[],
        drift_share=0.0,
        prediction_drift=None,
        quality=[],
        model_quality=quality,
        snapshot=None,
    )


def scaled_errors(error_scale: float) -> tuple[checks.CheckResult, dict[str, float]]:
    """Quality of predictions whose errors are ``error_scale`` times the Ridge's on the table,
    and the Ridge's own figures there as the holdout baseline."""
    _, target, schema, predicted = diabetes()
    error = predicted - target.to_numpy()
    baseline = {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(1 - np.sum(error**2) / np.sum((target - target.mean()) ** 2)),
    }
    predictions = pd.Series(target.to_numpy() + error_scale * error)
    quality = qualitymod.model_quality(target.astype(str), predictions, None, None, schema)
    return quality_only(quality), baseline


def _regression_status(error_scale: float) -> tuple[Status, dict[str, float]]:
    result, baseline = scaled_errors(error_scale)
    return classify(result, baseline, LIMITS), baseline


def test_regression_errors_risen_by_half_mean_degraded():
    status, baseline = _regression_status(1.5)
    assert status.status == "degraded", status.reason
    reason = status.conditions["degraded"]
    rmse = baseline["rmse"]
    assert f"rmse {1.5 * rmse:.4g} vs {rmse:.4g} on the holdout (up 50.0%, more than 25%" in reason
    assert "mae " in reason and "lower is better" in reason
    assert "r2 " not in reason  # R2 is shown, not judged: it depends on the labels' variance
    assert "(442 labelled rows)" in reason


def test_regression_errors_within_the_rise_threshold_stay_ok():
    clean, _ = _regression_status(1.0)
    assert clean.status == "ok", clean.reason
    assert clean.conditions == {} and "no quality drop" in clean.reason
    slightly, _ = _regression_status(1.2)  # RMSE, MAE +20 %: R2 falls ~0.2, but is not judged
    assert slightly.status == "ok", slightly.reason
    assert slightly.conditions == {}


def test_regression_error_rise_threshold_is_configurable():
    result, baseline = scaled_errors(1.3)
    rmse = baseline["rmse"]
    loose = Thresholds(0.1, 0.3, 0.05, 50, error_rise=0.5)
    assert classify(result, {"rmse": rmse}, loose).status == "ok"
    strict = Thresholds(0.1, 0.3, 0.05, 50, error_rise=0.25)
    assert "rmse" in classify(result, {"rmse": rmse}, strict).conditions["degraded"]


def test_unseen_categories_are_named_in_the_status():
    reference, schema = mixed(5000, seed=0)
    window, _ = mixed(2000, seed=1)
    window.loc[:11, "plan"] = "platinum"  # 12 rows
    window.loc[100:102, "city"] = ["berlin", "berlin", "rome"]
    result = check_window(Reference(reference), Current(window), schema, build_report=False)
    status = classify(result, {}, LIMITS)
    assert status.status == "warning", status.reason
    assert "unseen categories: city 3 rows ('berlin', 'rome'), plan 12 rows ('platinum')" in (
        status.reason
    )
    assert status.conditions == {}  # a warning: shown, not alerted

    clean, _ = mixed(2000, seed=1)
    result = check_window(Reference(reference), Current(clean), schema, build_report=False)
    status = classify(result, {}, LIMITS)
    assert status.status == "ok", status.reason
    assert "unseen" not in status.reason
