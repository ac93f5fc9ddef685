"""Accuracy and F1 estimated from a classifier's own probabilities (CBPE), before labels arrive.

The method's promise, tested as such: when labels really are drawn from the probabilities the
model gives (calibrated by construction), the estimate lands within sampling error of the
realised figure scored the way monitoring scores it; the formula on a hand-computed example;
chunk-by-chunk counts equal one pass; and the monitor flow stores and logs it for every
classifier run, labelled or not, with the dashboard showing it next to the realised figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_stack.data import DatasetSchema
from mlops_stack.monitoring.checks import Current, Reference, check_window
from mlops_stack.monitoring.estimate import (
    EstimateCounter,
    EstimatedQuality,
    estimate_quality,
    probability_frame,
    stored_estimate,
)
from mlops_stack.monitoring.quality import classification_quality
from mlops_stack.monitoring.window import read_window
from mlops_stack.names import ACCURACY, F1, Task
from tests.support.tables import mixed_table

# Labels drawn from the probabilities: the realised accuracy of n rows has a standard error of
# at most sqrt(0.25 / n) = 0.0079 at n = 4000 (F1's is of the same order); 0.025 is about three
# of them, so a correct estimator passes and an estimate off by a few points does not.
ROWS = 4000
TOLERANCE = 0.025


def drawn(classes: list[str], rows: int, seed: int, concentration: float, sharpen: float = 1.0):
    """Probabilities (Dirichlet) and labels drawn from them, raised to ``sharpen`` first.

    ``sharpen`` 1: the probabilities are calibrated by construction. Above 1: the labels follow
    sharper probabilities than the model states, i.e. the model is under-confident.
    """
    rng = np.random.default_rng(seed)
    stated = rng.dirichlet([concentration] * len(classes), size=rows)
    truth = stated**sharpen
    truth /= truth.sum(axis=1, keepdims=True)
    picked = (truth.cumsum(axis=1) < rng.random(rows)[:, None]).sum(axis=1)
    labels = pd.Series(np.asarray(classes)[np.minimum(picked, len(classes) - 1)])
    return pd.DataFrame(stated, columns=classes), labels


def realised(probabilities: pd.DataFrame, labels: pd.Series, classes: list[str]) -> dict:
    """Accuracy and F1 as the monitor scores labelled rows (classification_quality)."""
    predicted = pd.Series(np.asarray(classes)[probabilities[classes].to_numpy().argmax(axis=1)])
    schema = DatasetSchema(target="y", classes=sorted(classes), features=[])
    quality = classification_quality(labels, predicted, probabilities, classes, schema)
    assert quality is not None
    return quality.metrics


@pytest.mark.parametrize(
    ("classes", "concentration"),
    [
        (["yes", "no"], 0.7),  # binary, positive class "yes" (the larger as text)
        (["9", "10"], 1.5),  # binary, positive "9": sorted as text, not as numbers
        (["a", "b", "c"], 0.8),  # multi-class: macro F1
        (["w", "x", "y", "z", "v"], 0.5),
    ],
)
def test_the_estimate_meets_the_realised_figures_when_labels_follow_the_probabilities(
    classes: list[str], concentration: float
):
    probabilities, labels = drawn(classes, ROWS, seed=len(classes), concentration=concentration)
    estimate = estimate_quality(probabilities, classes)
    truth = realised(probabilities, labels, classes)

    assert estimate is not None and estimate.rows == ROWS
    for metric in (ACCURACY, F1):
        assert estimate.metrics[metric] == pytest.approx(truth[metric], abs=TOLERANCE), metric
    # and the realised figure is not trivially near: the classes are hard to tell apart
    assert truth[ACCURACY] < 0.9


def test_an_under_confident_model_is_estimated_too_low():
    """The stated assumption, shown: the estimate is only as good as the calibration."""
    classes = ["0", "1"]
    probabilities, labels = drawn(classes, ROWS, seed=7, concentration=2.0, sharpen=3.0)
    estimate = estimate_quality(probabilities, classes)
    truth = realised(probabilities, labels, classes)
    assert estimate is not None
    assert truth[ACCURACY] - estimate.metrics[ACCURACY] > 4 * TOLERANCE


def test_a_hand_computed_binary_example():
    # p(yes) 0.9, 0.7 -> predicted yes; 0.4, 0.1 -> predicted no; a row without probabilities
    probabilities = pd.DataFrame(
        {"no": [0.1, 0.3, 0.6, 0.9, np.nan], "yes": [0.9, 0.7, 0.4, 0.1, np.nan]}
    )
    estimate = estimate_quality(probabilities, ["no", "yes"])
    tp, fp, fn = 0.9 + 0.7, 0.1 + 0.3, 0.4 + 0.1
    assert estimate == EstimatedQuality(
        rows=4,
        metrics={
            ACCURACY: pytest.approx((0.9 + 0.7 + 0.6 + 0.9) / 4, abs=1e-15),  # 0.775
            F1: pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-15),  # 3.2 / 4.1
        },
    )
    # the positive class is "yes" whatever order the classes come in
    assert estimate_quality(probabilities[["yes", "no"]], ["yes", "no"]) == estimate


def test_a_hand_computed_multiclass_example():
    probabilities = pd.DataFrame(
        [
            [0.6, 0.3, 0.1, 0.0],  # predicted a
            [0.2, 0.5, 0.3, 0.0],  # predicted b
            [0.1, 0.2, 0.7, 0.0],  # predicted c
            [0.5, 0.4, 0.1, 0.0],  # predicted a
        ],
        columns=["a", "b", "c", "d"],  # d: never predicted, probability 0 everywhere
    )
    estimate = estimate_quality(probabilities, ["a", "b", "c", "d"])
    f1 = {  # 2 TP / (2 TP + FP + FN), one-vs-rest
        "a": 2 * 1.1 / (2 * 1.1 + (0.4 + 0.5) + (0.2 + 0.1)),
        "b": 2 * 0.5 / (2 * 0.5 + 0.5 + (0.3 + 0.2 + 0.4)),
        "c": 2 * 0.7 / (2 * 0.7 + 0.3 + (0.1 + 0.3 + 0.1)),
    }  # d is expected nowhere: left out of the macro mean, as scikit-learn leaves it out
    assert estimate is not None and estimate.rows == 4
    assert estimate.metrics[ACCURACY] == pytest.approx((0.6 + 0.5 + 0.7 + 0.5) / 4, abs=1e-15)
    assert estimate.metrics[F1] == pytest.approx(np.mean(list(f1.values())), abs=1e-15)


def test_chunk_by_chunk_counts_equal_one_pass():
    classes = ["a", "b", "c"]
    probabilities, _ = drawn(classes, ROWS, seed=3, concentration=0.9)
    probabilities.iloc[::97] = np.nan  # rows without probabilities, in every chunk
    whole = estimate_quality(probabilities, classes)

    counter = EstimateCounter(classes)
    edges = [0, 1, 1, 500, 1234, 3000, 3999, ROWS]  # an empty chunk and a one-row one
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        counter.add(probabilities.iloc[start:end])
    chunked = counter.result()

    assert whole is not None and chunked is not None
    assert chunked.rows == whole.rows == ROWS - len(range(0, ROWS, 97))
    assert counter.skipped == len(range(0, ROWS, 97))
    for metric in (ACCURACY, F1):
        assert chunked.metrics[metric] == pytest.approx(whole.metrics[metric], abs=1e-12)


def test_rows_without_a_distribution_are_skipped_and_nothing_is_no_estimate():
    probabilities = pd.DataFrame(
        {
            "0": [0.2, -0.1, 0.0, 1.5, 0.59, np.nan],
            "1": [0.8, 1.1, 0.0, 0.3, 0.4, 0.5],
            "extra": [9.0] * 6,  # a column of no class: ignored
        }
    )
    estimate = estimate_quality(probabilities, ["0", "1"])
    # kept: row 0, and row 4 whose 0.99 total is divided out (p(0) = 0.59 / 0.99)
    assert estimate is not None and estimate.rows == 2
    assert estimate.metrics[ACCURACY] == pytest.approx((0.8 + 0.59 / 0.99) / 2)
    assert estimate_quality(probabilities[["0"]], ["0", "1"]) is None  # a class lacks a column
    assert estimate_quality(probabilities.iloc[:0], ["0", "1"]) is None  # no rows
    assert estimate_quality(pd.DataFrame(), []) is None  # a regressor: nothing to estimate
    with pytest.raises(ValueError, match="two or more distinct classes"):
        EstimateCounter(["only"])


def test_logged_probability_dicts_become_one_column_per_class():
    logged = [{"0": 0.25, "1": 0.75}, None, {"1": "0.5"}, {"0": "n/a", "1": 0.1}]
    frame = probability_frame(logged, ["0", "1"])
    assert list(frame.columns) == ["0", "1"]
    expected = [[0.25, 0.75], [np.nan, np.nan], [np.nan, 0.5], [np.nan, 0.1]]
    np.testing.assert_array_equal(frame.to_numpy(), expected)


def test_the_stored_json_holds_the_window_and_the_labelled_rows():
    window = EstimatedQuality(300, {ACCURACY: 0.9, F1: 0.8})
    labelled = EstimatedQuality(120, {ACCURACY: 0.85, F1: 0.75})
    assert stored_estimate(window, None) == {"accuracy": 0.9, "f1": 0.8, "rows": 300}
    assert stored_estimate(window, labelled) == {
        "accuracy": 0.9, "f1": 0.8, "rows": 300,
        "labelled_accuracy": 0.85, "labelled_f1": 0.75, "labelled_rows": 120,
    }  # fmt: skip
    assert stored_estimate(None, None) is None


# --- the window pass and the in-memory checks carry it ---------------------------------------


def churn_schema() -> DatasetSchema:
    from mlops_stack.data import Dataset, infer_schema

    return infer_schema(Dataset(frame=mixed_table(400, seed=0), target="churn", source="test"))


def logged_chunk(start: int, rows: int, seed: int) -> pd.DataFrame:
    """A store-like chunk of a churn classifier's rows, every third one labelled."""
    table = mixed_table(rows, seed=seed).drop(columns="churn")
    table.index = pd.RangeIndex(start, start + rows)
    p_yes = np.random.default_rng(seed).uniform(0, 1, rows)
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(table.index, unit="s")
    return table.assign(
        created_at=created,
        prediction=np.where(p_yes > 0.5, "yes", "no"),
        probabilities=[{"no": 1 - p, "yes": p} for p in p_yes],
        label=[("yes" if i % 2 else "no") if i % 3 == 0 else None for i in table.index],
    )


def test_the_streamed_window_estimates_every_row_and_the_labelled_rows_apart():
    chunks = [logged_chunk(0, 300, 1), logged_chunk(300, 250, 2), logged_chunk(550, 40, 3)]
    window = read_window(iter(chunks), churn_schema(), max_rows=50, seed=0)

    frame = pd.concat(chunks)
    probabilities = pd.DataFrame(list(frame["probabilities"]), index=frame.index)
    every_row = estimate_quality(probabilities, ["no", "yes"])
    labelled = estimate_quality(probabilities[frame["label"].notna()], ["no", "yes"])
    assert every_row is not None and labelled is not None
    assert window.whole.estimated is not None and window.whole.estimated_labelled is not None
    assert window.whole.estimated.rows == 590  # every row, not the 50 sampled for drift
    assert window.whole.estimated_labelled.rows == 197
    for got, want in (
        (window.whole.estimated, every_row),
        (window.whole.estimated_labelled, labelled),
    ):
        assert got.metrics == pytest.approx(want.metrics, abs=1e-12)


def test_checks_on_a_window_in_memory_report_the_estimate_and_a_regressor_none():
    schema = churn_schema()
    current = logged_chunk(0, 200, 5)
    probabilities = pd.DataFrame(list(current["probabilities"]))
    reference = mixed_table(200, seed=0).drop(columns="churn")
    result = check_window(
        Reference(reference),
        Current(
            current[schema.feature_names],
            predictions=current["prediction"],
            labels=current["label"],
            probabilities=probabilities,
        ),
        schema,
        build_report=False,
    )
    labelled = current["label"].notna().to_numpy()
    assert result.estimated == estimate_quality(probabilities, schema.classes)
    assert result.estimated_labelled == estimate_quality(probabilities[labelled], schema.classes)
    assert result.estimated_labelled is not None and result.estimated_labelled.rows == 67

    regression = schema.model_copy(update={"task": Task.REGRESSION, "classes": []})
    numbers = current.assign(prediction=1.0, label=None)
    result = check_window(
        Reference(reference),
        Current(numbers[schema.feature_names], predictions=numbers["prediction"]),
        regression,
        build_report=False,
    )
    assert result.estimated is None and result.estimated_labelled is None
