"""A classifier's accuracy and F1 estimated from its own probabilities, before labels arrive.

Confidence-based performance estimation (CBPE; NannyML's name for it, after the published method):
if the model's probabilities are calibrated, a row whose predicted class has probability 0.8 is
right 80 % of the time, so the expected share of correct answers is the mean probability of the
predicted class, and the expected confusion counts are sums of probabilities:

- accuracy: mean over rows of p(predicted class);
- binary F1, of the positive class (``metrics.positive_class``, the class the realised F1 is
  of: :mod:`mlops_stack.metrics`), with q = p(positive):
  expected TP = sum of q over rows predicted positive, FP = sum of 1 - q over them, FN = sum of
  q over rows predicted negative; F1 = 2 TP / (2 TP + FP + FN) (0 when that is 0/0, as
  scikit-learn's ``zero_division=0``);
- multi-class F1: the same one-vs-rest counts per class, macro-averaged over the classes that
  are expected at all (2 TP + FP + FN > 0: a class that is never predicted and has probability
  0 everywhere is left out, as scikit-learn leaves out a class absent from labels and answers).

F1 is the ratio of expected counts (not the expected ratio), as NannyML computes it: over a
window of hundreds of rows the two differ by far less than the estimate's own error.

**The assumption.** The estimate is only as good as the calibration: an over-confident model is
estimated too good, an under-confident one too bad. The probabilities are used as the model gives
them, with no recalibration: the stack keeps no labelled rows next to the model that a
calibration map could be fitted on without reusing rows training already saw. Measured on the
built-in table (5-fold out-of-fold probabilities, 569 rows), estimated vs realised accuracy:
logistic regression 0.965 vs 0.979, random forest 0.934 vs 0.958 (its probabilities shrink
towards 0.5), gradient boosting 0.991 vs 0.972 (over-confident): a few points either way, the
sign following the model family. Under concept shift (the labels' relationship to the features
changes) no estimate from the model's own outputs can see the drop: only labels do. The error of
the estimate on fresh rows is measured in ``benchmarks/drift.py``.

The counts are sums, so a window streamed chunk by chunk (``monitoring.window``) accumulates
them in :class:`EstimateCounter` and gets the figures of one pass over the whole window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from mlops_stack.metrics import positive_class
from mlops_stack.names import ACCURACY, F1

Matrix = npt.NDArray[np.float64]

ROWS = "rows"  # the estimate's row count, next to the metrics in its stored JSON
LABELLED = "labelled_"  # prefix of the estimate over the labelled rows only, in the same JSON


@dataclass(frozen=True)
class EstimatedQuality:
    """Accuracy and F1 expected from ``rows`` rows' probabilities (names.ACCURACY, names.F1)."""

    rows: int
    metrics: dict[str, float]

    def as_json(self) -> dict[str, float]:
        """What ``monitor_runs.estimated`` stores: ``{"accuracy": .., "f1": .., "rows": n}``."""
        return {**self.metrics, ROWS: self.rows}


class EstimateCounter:
    """Expected confusion counts accumulated chunk by chunk; :meth:`result` gives the estimate.

    Why counts rather than figures: sums add up across chunks, so a streamed window gets the
    same estimate as one pass over it (up to float rounding), with memory bounded by a chunk.
    ``classes`` are the model's classes as text, in the order the argmax breaks ties in.
    """

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"an estimate needs two or more distinct classes, not {classes!r}")
        # binary F1 is the positive class's, as the realised F1 (metrics.positive_class)
        self.positive = (
            self.classes.index(positive_class(self.classes)) if len(self.classes) == 2 else None
        )
        self.rows = 0
        self.skipped = 0  # rows without usable probabilities
        self._correct = 0.0
        self._tp = np.zeros(len(self.classes))
        self._fp = np.zeros(len(self.classes))
        self._fn = np.zeros(len(self.classes))

    def add(self, probabilities: pd.DataFrame) -> None:
        """Count one chunk: a column per class, named by the class as text (others ignored)."""
        matrix, usable = usable_probabilities(probabilities, self.classes)
        self.skipped += int((~usable).sum())
        if not len(matrix):
            return
        predicted = matrix.argmax(axis=1)
        confidence = matrix[np.arange(len(matrix)), predicted]  # p(predicted class)
        k = len(self.classes)
        # per class: TP sums p(class) over rows predicted as it, FP sums 1 - p(class) over them
        # (the rows predicted as it, less TP), FN sums p(class) over the other rows
        tp = np.bincount(predicted, weights=confidence, minlength=k)
        self.rows += len(matrix)
        self._correct += float(confidence.sum())
        self._tp += tp
        self._fp += np.bincount(predicted, minlength=k) - tp
        self._fn += matrix.sum(axis=0) - tp

    def result(self) -> EstimatedQuality | None:
        """The estimate over every row counted so far; None when no row had probabilities."""
        if not self.rows:
            return None
        return EstimatedQuality(
            rows=self.rows,
            metrics={ACCURACY: self._correct / self.rows, F1: self._f1()},
        )

    def _f1(self) -> float:
        """The positive class's F1 (binary), else the macro mean over the expected classes."""
        denominators = 2 * self._tp + self._fp + self._fn
        if self.positive is not None:
            denominator = denominators[self.positive]
            return float(2 * self._tp[self.positive] / denominator) if denominator > 0 else 0.0
        expected = denominators > 0
        return float(np.mean(2 * self._tp[expected] / denominators[expected]))


def stored_estimate(
    window: EstimatedQuality | None, labelled: EstimatedQuality | None
) -> dict[str, float] | None:
    """What ``monitor_runs.estimated`` holds: the whole window's estimate, and the estimate over
    the labelled rows only under ``labelled_`` names; None when there is neither.

    E.g. ``{"accuracy": .95, "f1": .96, "rows": 1000, "labelled_accuracy": .94,
    "labelled_f1": .95, "labelled_rows": 300}``. Why both: the realised figure is measured on
    the labelled rows only, which need not be the window (labels lag; the newest rows have
    none), so the estimate is judged against the realised figure on the very same rows.
    """
    stored = window.as_json() if window is not None else {}
    if labelled is not None:
        stored |= {LABELLED + k: v for k, v in labelled.as_json().items()}
    return stored or None


def estimate_quality(probabilities: pd.DataFrame, classes: list[str]) -> EstimatedQuality | None:
    """Accuracy and F1 expected from a classifier's probabilities (one column per class).

    The predicted class is each row's argmax; rows with a missing or invalid probability are
    skipped. None when no row is usable, or for fewer than two classes (a regressor has no
    probabilities to estimate from).
    """
    if len({str(c) for c in classes}) < 2:
        return None
    counter = EstimateCounter(classes)
    counter.add(probabilities)
    return counter.result()


def usable_probabilities(
    probabilities: pd.DataFrame, classes: Sequence[str]
) -> tuple[Matrix, npt.NDArray[np.bool_]]:
    """The rows whose probabilities make a distribution over ``classes``, each summing to 1.

    Returns the matrix of usable rows (columns in ``classes`` order) and which rows were usable.
    A row is left out when a class's probability is missing (a class without a column counts as
    missing), outside [0, 1], or all are 0. Rows are divided by their sum, so that floats logged
    to a few digits still make a distribution (the estimate is an expectation under it).
    """
    columns = probabilities.rename(columns=str).reindex(columns=list(classes))
    if not all(ptypes.is_float_dtype(t) for t in columns.dtypes):  # text, objects: as numbers
        columns = columns.apply(pd.to_numeric, errors="coerce")
    matrix = columns.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        inside = ((matrix >= 0.0) & (matrix <= 1.0)).all(axis=1)
        total = matrix.sum(axis=1)
    usable = inside & (total > 0)
    kept = matrix[usable] / total[usable, None]
    return kept, usable


def probability_frame(
    values: Iterable[Mapping[str, Any] | None], classes: Sequence[str]
) -> pd.DataFrame:
    """Logged probability dicts (``{"class": p}``; None for none) as one float column per class.

    Cheaper than building a frame from the dicts (the monitor does this for every row of a
    window): one list per class, converted by numpy at once; missing values become NaN.
    """
    rows = [p if type(p) is dict or isinstance(p, Mapping) else None for p in values]
    return pd.DataFrame({c: _column([p.get(c) if p else None for p in rows]) for c in classes})


def _column(values: list[Any]) -> npt.NDArray[np.float64]:
    """Numbers (None: missing) as floats; a value that is no number reads as missing."""
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):  # one bad value: convert one by one
        return np.fromiter((_number(v) for v in values), dtype=float, count=len(values))


def _number(value: Any) -> float:
    """A logged probability as a float; anything that is no number reads as missing."""
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
