"""The quality metrics every part of the stack scores with, and the undefined-is-None convention.

One definition (``mlops_stack.metrics``): training's holdout evaluation, the gate, the monitor's
model quality and the dashboard give the same figure on the same rows, and a figure that does
not exist on the rows is None, which every reader handles (the gate, the monitor's status).
"""

from __future__ import annotations

from functools import cache

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from mlops_stack import metrics
from mlops_stack.data import Dataset, DatasetSchema, infer_schema
from mlops_stack.gate import decide
from mlops_stack.monitoring.checks import CheckResult
from mlops_stack.monitoring.quality import ModelQuality, model_quality
from mlops_stack.monitoring.status import Thresholds, classify
from mlops_stack.names import Task, quality_metrics
from mlops_stack.training import evaluate

# --- undefined is None -----------------------------------------------------------------------


def test_roc_auc_is_undefined_with_one_class_or_without_probabilities():
    probabilities = pd.DataFrame({"no": [0.8, 0.3], "yes": [0.2, 0.7]})
    one_class = metrics.classification_scores(
        ["yes", "yes"], ["no", "yes"], ["no", "yes"], probabilities
    )
    assert one_class["roc_auc"] is None and one_class["accuracy"] == 0.5
    none = metrics.classification_scores(["no", "yes"], ["no", "yes"], ["no", "yes"])
    assert none["roc_auc"] is None and none["f1"] == 1.0
    no_column = probabilities.drop(columns="yes")
    assert metrics.roc_auc(["no", "yes"], no_column, ["no", "yes"]) is None


def test_multiclass_roc_auc_is_undefined_when_a_class_has_no_row():
    probabilities = pd.DataFrame({"a": [0.7, 0.2], "b": [0.2, 0.7], "c": [0.1, 0.1]})
    assert metrics.roc_auc(["a", "b"], probabilities, ["a", "b", "c"]) is None


def test_r2_is_undefined_on_one_row_or_a_constant_label():
    one = metrics.regression_scores([3.0], [2.0])
    assert one["r2"] is None and one["rmse"] == 1.0 and one["error_bias"] == -1.0
    constant = metrics.regression_scores([5.0, 5.0, 5.0], [4.0, 5.0, 6.0])
    assert constant["r2"] is None and constant["mae"] == pytest.approx(2 / 3)


def test_no_scored_row_leaves_every_figure_undefined():
    assert set(metrics.classification_scores([], [], ["0", "1"]).values()) == {None}
    assert set(metrics.regression_scores([], []).values()) == {None}


def test_no_figure_is_ever_nan():
    """scikit-learn answers NaN (R2 of one row) or a stand-in (0.0 for a constant label)."""
    for figures in (
        metrics.regression_scores([1.0], [1.0]),
        metrics.regression_scores([2.0, 2.0], [1.0, 3.0]),
        metrics.classification_scores(
            ["1"], ["1"], ["0", "1"], pd.DataFrame({"0": [0.1], "1": [0.9]})
        ),
    ):
        assert not any(isinstance(v, float) and np.isnan(v) for v in figures.values()), figures


def test_readers_helpers_split_defined_from_undefined_figures():
    figures = {"accuracy": 0.9, "roc_auc": None, "f1": 0.0}
    assert metrics.defined(figures) == {"accuracy": 0.9, "f1": 0.0}
    assert metrics.undefined(figures) == ["roc_auc"]
    assert metrics.shown(None) == "undefined" and metrics.shown(0.12345) == "0.1235"


# --- classes and the positive class ----------------------------------------------------------


def test_binary_string_labels_score_the_larger_class_sorted_as_text():
    labels = ["yes", "no", "yes", "yes", "no", "no"]
    predicted = ["yes", "yes", "no", "yes", "no", "no"]
    p_yes = [0.9, 0.6, 0.4, 0.8, 0.3, 0.1]
    probabilities = pd.DataFrame({"no": 1 - np.array(p_yes), "yes": p_yes})
    figures = metrics.classification_scores(labels, predicted, ["yes", "no"], probabilities)
    assert metrics.positive_class(["yes", "no"]) == "yes"
    assert figures["f1"] == f1_score(labels, predicted, pos_label="yes")
    assert figures["precision"] == precision_score(labels, predicted, pos_label="yes")
    assert figures["recall"] == recall_score(labels, predicted, pos_label="yes")
    assert figures["roc_auc"] == roc_auc_score(np.array(labels) == "yes", p_yes)


def test_numeric_classes_are_ordered_by_value_whether_typed_or_text():
    """scikit-learn orders a model's int classes 9 < 10; the monitor reads them back as text,
    where '10' < '9': both must pick 10 as the positive class."""
    assert metrics.class_order([10, 9]) == metrics.class_order(["9", "10"]) == ["9", "10"]
    assert metrics.positive_class([9, 10]) == metrics.positive_class(["10", "9"]) == "10"
    assert metrics.class_order([1.0, 0.0]) == ["0", "1"]  # whole floats lose their '.0'
    assert metrics.class_order(["b", "a", "10"]) == ["10", "a", "b"]  # not all numbers: text
    typed = metrics.classification_scores([9, 10, 10], [10, 10, 9], [9, 10])
    text = metrics.classification_scores(["9", "10", "10"], ["10", "10", "9"], ["10", "9"])
    assert typed == text and typed["precision"] == 0.5


def test_multiclass_scores_are_macro_averages_and_one_vs_rest_roc_auc():
    labels = ["a", "b", "c", "a", "b", "c"]
    predicted = ["a", "b", "b", "a", "c", "c"]
    matrix = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.4, 0.5],
         [0.1, 0.2, 0.7]]
    )  # fmt: skip
    probabilities = pd.DataFrame(matrix, columns=["a", "b", "c"])
    figures = metrics.classification_scores(labels, predicted, ["c", "a", "b"], probabilities)
    assert figures["f1"] == f1_score(labels, predicted, average="macro")
    assert figures["recall"] == recall_score(labels, predicted, average="macro")
    expected = roc_auc_score(labels, matrix, multi_class="ovr", average="macro")
    assert figures["roc_auc"] == pytest.approx(expected)


def test_regression_scores_match_numpy():
    truth, predicted = np.array([3.0, 5.0, 2.5, 7.0]), np.array([2.5, 5.0, 4.0, 8.0])
    error = predicted - truth
    figures = metrics.regression_scores(truth, predicted)
    assert figures["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert figures["mae"] == pytest.approx(np.mean(np.abs(error)))
    assert figures["error_bias"] == pytest.approx(np.mean(error))
    assert figures["r2"] == pytest.approx(
        1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2)
    )


def test_per_class_scores_count_true_and_predicted_rows():
    frame = metrics.per_class_scores(["a", "a", "b"], ["a", "b", "b"], ["a", "b", "c"])
    assert list(frame.index) == ["a", "b", "c"]
    assert list(frame["true rows"]) == [2, 1, 0] and list(frame["predicted rows"]) == [1, 2, 0]
    assert frame.loc["a", "precision"] == 1.0 and frame.loc["b", "recall"] == 1.0


# --- training and the monitor agree ----------------------------------------------------------


@cache
def _table(name: str) -> tuple[pd.DataFrame, pd.Series, DatasetSchema]:
    loader = {"cancer": load_breast_cancer, "iris": load_iris, "diabetes": load_diabetes}[name]
    frame = loader(as_frame=True).frame
    if name == "cancer":  # text classes, as a table of words would have them
        frame = frame.assign(target=frame["target"].map({0: "malignant", 1: "benign"}))
    task = Task.REGRESSION if name == "diabetes" else Task.CLASSIFICATION
    schema = infer_schema(Dataset(frame=frame, target="target", source="test"), task)
    return frame.drop(columns="target"), frame["target"], schema


@pytest.mark.parametrize("table", ["cancer", "iris", "diabetes"])
def test_training_and_the_monitor_give_identical_figures_on_the_same_rows(table: str):
    """The holdout figure the gate and the monitor's baseline read, and the monitor's figure
    over the same rows logged as the predictor logs them (labels and classes as text)."""
    features, labels, schema = _table(table)
    model = Ridge() if schema.task is Task.REGRESSION else LogisticRegression(max_iter=5000)
    model.fit(features, labels)
    held = evaluate(model, features, labels)
    predictions = pd.Series(model.predict(features))
    probabilities = None
    if schema.task is Task.CLASSIFICATION:
        probabilities = pd.DataFrame(
            model.predict_proba(features), columns=[str(c) for c in model.classes_]
        )
        predictions = predictions.astype(str)
    quality = model_quality(labels.astype(str), predictions, probabilities, None, schema)
    assert quality is not None and quality.labelled_rows == len(labels)
    for name in quality_metrics(schema.task):
        assert quality.get(name) == held[name], name  # identical, not approximately equal


def test_a_one_class_holdout_evaluates_with_roc_auc_undefined():
    features, labels, _ = _table("cancer")
    model = LogisticRegression(max_iter=5000).fit(features, labels)
    benign = labels == "benign"
    figures = evaluate(model, features[benign], labels[benign])
    assert figures["roc_auc"] is None and figures["accuracy"] is not None


# --- the readers of an undefined figure ------------------------------------------------------


def test_the_gate_does_not_promote_an_undefined_candidate_figure():
    decision = decide({"roc_auc": None, "f1": 0.9}, None, metric="roc_auc", bounds={})
    assert not decision.promote and decision.candidate_score is None
    assert "candidate's roc_auc is undefined on this data (ROC AUC needs two classes" in (
        decision.reason
    )


def test_the_gate_does_not_promote_on_a_bound_it_cannot_check():
    decision = decide({"rmse": 50.0, "r2": None}, None, metric="rmse", bounds={"r2": 0.0})
    assert not decision.promote and decision.failed_bounds == {}
    assert "r2 is undefined on this data" in decision.reason


def test_the_gate_does_not_compare_with_an_undefined_champion_figure():
    decision = decide(
        {"roc_auc": 0.9}, {"roc_auc": None}, metric="roc_auc", bounds={}, champion_version="2"
    )
    assert not decision.promote and decision.champion_score is None
    assert decision.reason.startswith("champion v2 cannot be compared: its roc_auc is undefined")


def _quality_only(quality: ModelQuality) -> CheckResult:
    return CheckResult(
        current_rows=100, analysed_rows=100, reference_rows=100, sampled=False, sample_note="",
        features=[], drift_share=0.0, prediction_drift=None, quality=[], model_quality=quality,
        snapshot=None,
    )  # fmt: skip


def test_the_monitor_reports_an_undefined_figure_and_never_counts_it_as_a_drop():
    limits = Thresholds(warning_share=0.0, drift_share=0.5, quality_drop=0.05, min_labelled=10)
    quality = ModelQuality(40, {"accuracy": 0.95, "f1": 0.9, "roc_auc": None})
    status = classify(_quality_only(quality), {"accuracy": 0.95, "roc_auc": 0.99}, limits)
    assert status.status == "ok" and not status.conditions
    assert "roc_auc undefined on the 40 labelled rows, not judged" in status.reason
    few = ModelQuality(5, {"accuracy": 0.95, "f1": 0.9, "roc_auc": None})  # not judged at all
    assert "undefined" not in classify(_quality_only(few), {}, limits).reason


def test_training_logs_the_defined_figures_and_names_the_undefined_ones(stack):
    from mlops_stack.flows.train import UNDEFINED_TAG, _log_metrics
    from mlops_stack.registry import use_tracking

    use_tracking(stack())
    mlflow.set_experiment("holdout")  # in this test's store, whatever an earlier test made active
    with mlflow.start_run() as run:
        _log_metrics({"accuracy": 0.9, "roc_auc": None})
    logged = mlflow.get_run(run.info.run_id).data
    assert logged.metrics == {"accuracy": 0.9}
    assert logged.tags[UNDEFINED_TAG] == "roc_auc"
