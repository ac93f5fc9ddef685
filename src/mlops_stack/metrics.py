"""Quality metrics of predictions against true labels: one definition for the whole stack.

Training's holdout evaluation (so the gate), the monitor's model quality over a window, the
live champion-challenger comparison and the dashboard all score here, so that a figure means
one thing wherever it is shown, and a live figure compares with the holdout figure it is judged
against. Fixing a metric here fixes it for all of them at once.

- **Classification**: accuracy; F1, precision and recall of the positive class for two classes,
  their macro average over the classes for more; ROC AUC of the positive class's probability
  (binary) or the one-vs-rest macro average (multi-class). Classes are compared as text
  (:func:`class_text`): the monitor gets its labels back as text from ``/feedback``, and a
  model's classes as text are what the predictor answers.
- **The positive class** of a binary model is the larger of its two classes in
  :func:`class_order`: by numeric value when every class reads as a number (``9 < 10``), else
  as text (``'no' < 'yes'``). That is the order scikit-learn sorts a model's ``classes_`` in
  when it was trained on numbers or on text, and it is computed from the classes' text alone,
  so training (typed labels) and the monitor (labels as text) pick the same class.
- **Regression**: RMSE, MAE, R2, and the error bias (mean of prediction - label: above 0 the
  model over-predicts).

**An undefined figure is None.** Some figures do not exist on some rows: ROC AUC with one class
among the rows or without the model's probabilities, R2 with fewer than two rows or a constant
label (its denominator is 0), any figure over no row at all. Such a figure is ``None``: never
NaN, and never a stand-in number (scikit-learn's ``r2_score`` answers 0.0 or 1.0 for a
constant label). Why None: NaN compares false with everything, so a gate or a status rule that
reads it silently decides "not better" or "no drop", and it is no JSON value; a stand-in number
is a figure nobody measured. None is JSON null and SQL NULL where figures are stored, and the
type (``float | None``) makes every reader decide what undefined means to it: the gate does not
promote on it, the monitor reports it as undefined and never as a drop, MLflow (floats only)
is not given it and the run says so (:func:`undefined`), pages show it as undefined.

Low in the layers on purpose: this module imports ``names`` and ``logs`` of the stack (neither
imports anything of it) and the numerical libraries, so that every layer can score. It imports
scikit-learn's metrics when it first scores, not with the module: the registry, the gate and
the dashboard read its convention (:func:`why_undefined`, :func:`shown`), and scikit-learn adds
0.6 s to the start of a command like ``mlops models`` that scores nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from mlops_stack.logs import get_logger
from mlops_stack.names import (
    ACCURACY,
    ERROR_BIAS,
    F1,
    HOLDOUT_METRICS,
    MAE,
    PRECISION,
    R2,
    RECALL,
    RMSE,
    ROC_AUC,
)

log = get_logger(__name__)

Figures = dict[str, float | None]
"""Metric name (``mlops_stack.names``) -> value; None when undefined on the rows scored."""

CLASSIFICATION_METRICS: tuple[str, ...] = HOLDOUT_METRICS
"""What :func:`classification_scores` returns, in this order."""

REGRESSION_METRICS: tuple[str, ...] = (RMSE, MAE, R2, ERROR_BIAS)
"""What :func:`regression_scores` returns, in this order."""

UNDEFINED = "undefined"
"""How an undefined figure is written where a person reads it (logs, reasons, tables)."""

_WHY_UNDEFINED = {
    ROC_AUC: "ROC AUC needs two classes among the rows and the model's probabilities",
    R2: "R2 needs two rows or more whose labels differ",
}


# --- classes ---------------------------------------------------------------------------------
def class_text(values: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """Class labels as text; whole floats lose their '.0' (a NaN turns int labels into floats).

    Labels, predictions and a model's classes all go through here before they are compared.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if ptypes.is_float_dtype(series) and bool(np.all(np.mod(series.to_numpy(), 1) == 0)):
        series = series.astype("int64")
    return np.asarray(series.astype(str), dtype=str)


def class_order(classes: npt.ArrayLike) -> list[str]:
    """The classes as text, smallest first: by numeric value when every one reads as a number,
    else as text; ties (``'1'`` and ``'1.0'``) as text, so the order never depends on input order.

    scikit-learn sorts a model's ``classes_`` by value, numbers as numbers and text as text; this
    gives that order from the classes' text alone, which is all the monitor has.
    """
    texts = sorted(set(class_text(classes).tolist()))
    numbers = [(number, text) for text in texts if (number := _number(text)) is not None]
    if len(numbers) == len(texts):
        return [text for _, text in sorted(numbers)]
    return texts


def positive_class(classes: npt.ArrayLike) -> str:
    """The class binary F1, precision, recall and ROC AUC are of: the larger of the two."""
    ordered = class_order(classes)
    if len(ordered) != 2:
        raise ValueError(f"a positive class needs exactly two classes, not {ordered}")
    return ordered[1]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --- classification --------------------------------------------------------------------------
def classification_scores(
    labels: npt.ArrayLike,
    predictions: npt.ArrayLike,
    classes: npt.ArrayLike,
    probabilities: pd.DataFrame | None = None,
) -> Figures:
    """Accuracy, F1, ROC AUC, precision and recall of ``predictions`` against ``labels``.

    Every row given is scored (leave unlabelled rows out first). ``classes``: the model's
    classes; two of them make the scores binary, of :func:`positive_class`. ``probabilities``:
    one column per class, named by the class (as text), lined up with the rows; a row with a
    missing probability is left out of ROC AUC only. No row: every figure None.
    """
    truth, predicted = class_text(labels), class_text(predictions)
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    if not len(truth):
        return dict.fromkeys(CLASSIFICATION_METRICS, None)
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    known = class_order(classes)
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": known[1]} if len(known) == 2 else {"average": "macro"}
    )
    return {
        ACCURACY: float(accuracy_score(truth, predicted)),
        F1: float(f1_score(truth, predicted, zero_division=0, **averaging)),
        ROC_AUC: roc_auc(truth, probabilities, known),
        PRECISION: float(precision_score(truth, predicted, zero_division=0, **averaging)),
        RECALL: float(recall_score(truth, predicted, zero_division=0, **averaging)),
    }


def roc_auc(
    labels: npt.ArrayLike, probabilities: pd.DataFrame | None, classes: npt.ArrayLike
) -> float | None:
    """ROC AUC of the rows that have every class's probability; None where it is undefined.

    Binary: of the positive class's probability; multi-class: one-vs-rest, macro-averaged.
    Undefined without probabilities, with one class among the rows, and (multi-class) with a
    class that has no row: its one-vs-rest AUC does not exist. Input scikit-learn refuses (no
    column for a class, labels outside the classes, rows that are no distribution) is logged
    and undefined too, as the monitor must still report the window's other figures.
    """
    if probabilities is None:
        return None
    truth, known = class_text(labels), class_order(classes)
    if len(probabilities) != len(truth):
        raise ValueError(f"probabilities has {len(probabilities)} rows, labels {len(truth)}")
    scores = probabilities.rename(columns=str)
    absent = [c for c in known if c not in scores.columns]
    if absent:
        log.warning("metrics.roc_auc_undefined", reason="no probability column", classes=absent)
        return None
    matrix = scores[known].to_numpy(dtype=float)
    scored = ~np.isnan(matrix).any(axis=1)
    truth, matrix = truth[scored], matrix[scored]
    if len(known) < 2 or len(np.unique(truth)) < 2:
        return None  # one class among the rows (or a model of one class)
    if len(known) > 2 and not np.isin(known, truth).all():
        return None  # a class without a row
    from sklearn.metrics import roc_auc_score

    try:
        if len(known) == 2:
            return float(roc_auc_score(truth == known[1], matrix[:, 1]))
        return float(roc_auc_score(truth, matrix, multi_class="ovr", average="macro", labels=known))
    except ValueError as exc:  # e.g. labels outside the classes
        log.warning("metrics.roc_auc_undefined", reason=str(exc))
        return None


def per_class_scores(
    labels: npt.ArrayLike, predictions: npt.ArrayLike, classes: list[str]
) -> pd.DataFrame:
    """Precision, recall and F1 of each of ``classes``, with its true and predicted row counts.

    scikit-learn's figures: a class never predicted has precision 0, one never seen recall 0.
    """
    columns = ["precision", "recall", "f1", "true rows", "predicted rows"]
    truth, predicted = class_text(labels), class_text(predictions)
    if not len(truth):
        return pd.DataFrame(columns=columns)
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    counted = pd.Series(predicted).value_counts().reindex(classes, fill_value=0)
    return pd.DataFrame(
        dict(zip(columns, (precision, recall, f1, support, counted.to_numpy()), strict=True)),
        index=pd.Index(classes, name="class"),
    )


# --- regression ------------------------------------------------------------------------------
def regression_scores(labels: npt.ArrayLike, predictions: npt.ArrayLike) -> Figures:
    """RMSE, MAE, R2 and error bias (mean of prediction - label) of numeric rows.

    Every row given is scored: read labels that arrive as text as numbers and leave out the
    rows that are no number first. No row: every figure None.
    """
    truth = np.asarray(labels, dtype=float)
    predicted = np.asarray(predictions, dtype=float)
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    if not len(truth):
        return dict.fromkeys(REGRESSION_METRICS, None)
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    return {
        RMSE: float(root_mean_squared_error(truth, predicted)),
        MAE: float(mean_absolute_error(truth, predicted)),
        R2: r2(truth, predicted),
        ERROR_BIAS: float(np.mean(predicted - truth)),
    }


def r2(truth: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]) -> float | None:
    """The coefficient of determination; None for fewer than two rows or a constant label."""
    if len(truth) < 2 or float(np.ptp(truth)) == 0:
        return None
    from sklearn.metrics import r2_score

    return float(r2_score(truth, predicted))


# --- readers ---------------------------------------------------------------------------------
def defined(figures: Mapping[str, float | None]) -> dict[str, float]:
    """The figures that have a value (what MLflow, which takes floats only, can be given)."""
    return {name: float(value) for name, value in figures.items() if value is not None}


def undefined(figures: Mapping[str, float | None]) -> list[str]:
    """The names of the figures that are undefined on the rows scored, in order."""
    return [name for name, value in figures.items() if value is None]


def why_undefined(metric: str) -> str:
    """Why ``metric`` can be undefined, in words for a reason or a log line."""
    return _WHY_UNDEFINED.get(metric, f"{metric} needs a row to score")


def shown(value: float | None, digits: int = 4) -> str:
    """A figure as a person reads it: ``digits`` decimals, or ``undefined``."""
    return UNDEFINED if value is None else f"{value:.{digits}f}"
