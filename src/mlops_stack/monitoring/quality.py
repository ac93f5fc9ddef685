"""Data quality and model quality of a window of logged predictions.

- **Data quality** (missing share, values outside the training range, categories training never
  saw) is checked against the schema saved with the model, in plain pandas over every row: it
  is cheap, and a handful of bad rows must not be sampled away. A window streamed in chunks is
  counted chunk by chunk (:class:`QualityCounter`), with the totals of one pass.
- **Model quality** uses the rows that have a label, scored by :mod:`mlops_stack.metrics`, as
  ``training.evaluate`` scores the holdout, so that the numbers compare with the holdout
  metrics logged at training time: accuracy, F1 and ROC AUC of a classifier; RMSE, MAE, R2 and
  the error bias (mean of prediction - label) of a regressor, named as ``mlops_stack.names``
  (and Evidently's regression metrics) name them. A figure undefined on the rows is None.
- **Evidently's regression report** (:func:`regression_report`) draws a regressor's labelled
  rows: predicted against actual, the error distribution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.presets import RegressionPreset

from mlops_stack import metrics
from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema, FeatureSpec
from mlops_stack.logs import get_logger
from mlops_stack.monitoring.frames import (
    LABEL_COLUMN,
    PREDICTION_COLUMN,
    numeric,
    sample_positions,
)
from mlops_stack.names import Task, quality_metrics

log = get_logger(__name__)

MAX_UNSEEN_EXAMPLES = 5


@dataclass(frozen=True)
class FeatureQuality:
    """What in one feature column of the window training never saw, over every row."""

    feature: str
    missing_share: float
    out_of_range: int  # numeric values outside the training [min, max]
    unseen_categories: int  # categorical values not among the training categories
    unseen_examples: list[str]  # up to 5, the most frequent first


@dataclass(frozen=True)
class ModelQuality:
    """Quality of the predictions that have a label, scored like training scores the holdout.

    ``metrics`` is keyed by the names of :mod:`mlops_stack.names`: accuracy, f1 and roc_auc
    for a classifier, rmse, mae, r2 and error_bias for a regressor. A value is None when it
    cannot be computed (ROC AUC of one class, R2 of fewer than two rows).
    """

    labelled_rows: int
    metrics: dict[str, float | None]
    task: Task = Task.CLASSIFICATION

    def get(self, name: str) -> float | None:
        """One metric's value; None when it is undefined or not a metric of this task."""
        return self.metrics.get(name)


class QualityCounter:
    """Data quality of a window counted chunk by chunk, the same as over the window at once.

    Why: the monitor streams a large window in chunks and must still count every bad row; the
    counts (missing values, values outside the training range, unseen categories by value) add
    up across chunks, so the totals equal one pass over the whole window.
    """

    def __init__(self, schema: DatasetSchema) -> None:
        self.specs = list(schema.features)
        self.rows = 0
        self._missing = dict.fromkeys(schema.feature_names, 0)
        self._outside = dict.fromkeys(schema.feature_names, 0)
        self._unseen: dict[str, pd.Series] = {}

    def add(self, frame: pd.DataFrame) -> None:
        """Count one chunk: ``frame`` has a column per schema feature, named as in the schema."""
        self.rows += len(frame)
        for spec in self.specs:
            values = frame[spec.name]
            self._missing[spec.name] += int(values.isna().sum())
            if spec.kind == "numeric":
                self._outside[spec.name] += _out_of_range(values, spec)
                continue
            unseen = _unseen_counts(values, spec)
            if unseen is not None and len(unseen):
                before = self._unseen.get(spec.name)
                self._unseen[spec.name] = (
                    unseen if before is None else before.add(unseen, fill_value=0)
                )

    def results(self) -> list[FeatureQuality]:
        """One FeatureQuality per schema feature, in schema order."""
        return [self._result(spec) for spec in self.specs]

    def _result(self, spec: FeatureSpec) -> FeatureQuality:
        missing_share = self._missing[spec.name] / self.rows if self.rows else 0.0
        if spec.kind == "numeric":
            return FeatureQuality(spec.name, missing_share, self._outside[spec.name], 0, [])
        unseen = self._unseen.get(spec.name)
        if unseen is None:
            return FeatureQuality(spec.name, missing_share, 0, 0, [])
        unseen = unseen.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        examples = list(unseen.index[:MAX_UNSEEN_EXAMPLES])
        return FeatureQuality(spec.name, missing_share, 0, int(unseen.sum()), examples)


def _out_of_range(values: pd.Series, spec: FeatureSpec) -> int:
    """How many numbers lie outside the training [min, max]; text that is no number does not."""
    numbers = numeric(values)
    low = -np.inf if spec.min is None else spec.min
    high = np.inf if spec.max is None else spec.max
    return int(((numbers < low) | (numbers > high)).sum())


def _unseen_counts(values: pd.Series, spec: FeatureSpec) -> pd.Series | None:
    """Counts of the values (as strings) outside the training categories; None: not checked.

    Counting distinct values first keeps this cheap on a million rows. The schema stores at most
    ``MAX_STORED_CATEGORIES`` categories, so a full list may be cut short: then nothing is
    reported rather than false alarms.
    """
    known = spec.categories
    if known is None or len(known) >= MAX_STORED_CATEGORIES:
        return None
    counts = values.value_counts(dropna=True)
    counts.index = counts.index.map(str)
    counts = counts.groupby(level=0, sort=False).sum()  # 1 and "1" are one category as text
    return counts[~counts.index.isin(known)]


def model_quality(
    labels: pd.Series | None,
    predictions: pd.Series | None,
    probabilities: pd.DataFrame | None,
    classes: list[str] | None,
    schema: DatasetSchema,
) -> ModelQuality | None:
    """Quality on the labelled rows, the way training scores its holdout, for the schema's task.

    Classification (:func:`classification_quality`): accuracy, F1 and ROC AUC. Regression
    (:func:`regression_quality`): RMSE, MAE, R2 and the error bias.
    """
    if labels is None or predictions is None:
        return None
    if schema.task is Task.REGRESSION:
        return regression_quality(labels, predictions)
    return classification_quality(labels, predictions, probabilities, classes, schema)


def classification_quality(
    labels: pd.Series,
    predictions: pd.Series,
    probabilities: pd.DataFrame | None,
    classes: list[str] | None,
    schema: DatasetSchema,
) -> ModelQuality | None:
    """Accuracy, F1 and ROC AUC on the labelled rows, scored by :mod:`mlops_stack.metrics` as
    ``training.evaluate`` scores the holdout.

    Binary: F1 and ROC AUC of the positive class (``metrics.positive_class``). Multi-class:
    macro F1 and one-vs-rest macro ROC AUC. ROC AUC is None where it is undefined.
    """
    labelled = labels.notna().to_numpy()
    if not labelled.any():
        return None
    if probabilities is not None and len(probabilities) != len(labelled):
        raise ValueError(f"probabilities has {len(probabilities)} rows, labels {len(labelled)}")
    scored = None if probabilities is None else probabilities.loc[labelled]
    figures = metrics.classification_scores(
        labels[labelled], predictions[labelled], classes or schema.classes, scored
    )
    return ModelQuality(
        labelled_rows=int(labelled.sum()),
        metrics={name: figures[name] for name in quality_metrics(Task.CLASSIFICATION)},
    )


def regression_quality(labels: pd.Series, predictions: pd.Series) -> ModelQuality | None:
    """RMSE, MAE, R2 and error bias (mean of prediction - label) over the labelled rows.

    Labels come back from ``/feedback`` as text and predictions as JSON numbers: both are read
    with ``pd.to_numeric``. A label that is no number cannot be scored: its row is left out and
    counted in a warning. Scored by :mod:`mlops_stack.metrics`, as training scores the holdout,
    so the figures compare with the champion's holdout metrics; R2 is None where undefined.
    """
    truth = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
    predicted = pd.to_numeric(predictions, errors="coerce").to_numpy(dtype=float)
    given = labels.notna().to_numpy()
    scored = given & ~np.isnan(truth) & ~np.isnan(predicted)
    if (given & ~scored).any():
        log.warning("checks.rows_not_scored", rows=int((given & ~scored).sum()), why="not numbers")
    if not scored.any():
        return None
    return ModelQuality(
        labelled_rows=int(scored.sum()),
        metrics=metrics.regression_scores(truth[scored], predicted[scored]),
        task=Task.REGRESSION,
    )


def regression_rows(
    labels: pd.Series | None, predictions: pd.Series | None, schema: DatasetSchema
) -> pd.DataFrame | None:
    """A regressor's labelled rows as two float columns (label, prediction); else None.

    What Evidently's regression report is built from: compact (two floats a row), so that the
    monitor can keep every labelled row of a window.
    """
    if schema.task is not Task.REGRESSION or labels is None or predictions is None:
        return None
    rows = pd.DataFrame(
        {
            LABEL_COLUMN: pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float),
            PREDICTION_COLUMN: pd.to_numeric(predictions, errors="coerce").to_numpy(dtype=float),
        }
    ).dropna()
    return rows if len(rows) else None


def regression_report(rows: pd.DataFrame, *, max_rows: int = 50_000, seed: int = 42) -> Any:
    """Evidently's regression preset over a regressor's labelled rows (:func:`regression_rows`).

    Why, next to our own figures: its HTML report shows predicted against actual values and
    the error distribution, which no single number does. It costs about 3 s at 50,000 rows,
    so a larger window is drawn down to a uniform random sample of ``max_rows`` rows; the
    figures stored with the run are computed over every labelled row all the same.
    """
    positions = sample_positions(len(rows), max_rows, seed)
    if positions is not None:
        rows = rows.iloc[positions]
    definition = DataDefinition(
        numerical_columns=[LABEL_COLUMN, PREDICTION_COLUMN],
        regression=[Regression(target=LABEL_COLUMN, prediction=PREDICTION_COLUMN)],
    )
    started = time.perf_counter()
    with np.errstate(divide="ignore", invalid="ignore"):  # MAPE of a zero label
        snapshot = Report([RegressionPreset()]).run(
            current_data=Dataset.from_pandas(rows, data_definition=definition),
            reference_data=None,
        )
    log.debug("checks.regression_report", rows=len(rows), seconds=time.perf_counter() - started)
    return snapshot
