"""Drift, data quality and model quality of a window of logged predictions.

Pure computation over pandas frames, so the monitor flow owns every side effect (database,
MLflow, alerts) and these checks can be tested on plain tables.

- **Drift** runs through Evidently on a uniform random sample of the window: drift tests gain
  nothing from a million rows that 50,000 do not already show, and Evidently's cost grows with
  rows. Each feature gets the test Evidently picks by default for its kind and the reference size
  (K-S / chi-square / Z-test p-values up to 1000 reference rows; Wasserstein / Jensen-Shannon
  distances above), and Evidently's own test status says whether it drifted.
- **Data quality** (missing share, values outside the training range, categories training never
  saw) is checked against the schema saved with the model, in plain pandas over every row: it is
  cheap, and a handful of bad rows must not be sampled away.
- **Model quality** uses the rows that have a label, scored like ``training.evaluate`` so that
  the numbers compare with the holdout metrics logged at training time: accuracy, F1 and ROC
  AUC of a classifier; RMSE, MAE, R2 and the error bias (mean of prediction - label) of a
  regressor, named as ``mlops_stack.names`` (and Evidently's regression metrics) name them.
- **Prediction drift** compares the model's outputs with its outputs on the reference: the mix
  of predicted classes (a categorical test), or the distribution of a regressor's predicted
  numbers (a numeric test).

A window too large to hold in memory is read in chunks (``monitoring.window``): the quality
counts accumulate chunk by chunk (:class:`QualityCounter`) and arrive here precomputed
(:class:`WholeWindow`) next to the uniform sample the drift tests run on: :func:`check_sample`.
A window held whole in memory goes to :func:`check_window`, which counts them itself.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset, RegressionPreset
from pandas.api import types as ptypes
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema, FeatureSpec
from mlops_stack.logs import get_logger
from mlops_stack.monitoring.estimate import EstimatedQuality, estimate_quality
from mlops_stack.names import ACCURACY, ERROR_BIAS, F1, MAE, R2, RMSE, ROC_AUC, Task

log = get_logger(__name__)

Positions = npt.NDArray[np.int64]  # sorted row positions of a sample

PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"
MAX_UNSEEN_EXAMPLES = 5

# Evidently's drift methods (by the display name it reports) whose score is a p-value: drift
# means a small score. Every other method reports a distance: drift means a large score.
P_VALUE_METHODS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "empirical_mmd",
        "t_test",
        "Total-Variation-Distance",
    }
)


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift test: Evidently's method, threshold, score and verdict."""

    feature: str
    kind: str  # "numeric" | "categorical"
    method: str
    threshold: float
    score: float
    drifted: bool

    @property
    def p_value(self) -> bool:
        """True when the score is a p-value (drift = small score), False for a distance."""
        return self.method in P_VALUE_METHODS

    @property
    def severity(self) -> float:
        """How far past (> 0) or short of (< 0) its threshold the score is, in log10 units.

        P-values and distances live on different scales; the log of the ratio to the threshold
        puts both on one, so that features can be ranked most drifted first.
        """
        tiny = 1e-300
        score, threshold = max(self.score, tiny), max(self.threshold, tiny)
        ratio = threshold / score if self.p_value else score / threshold
        return math.log10(ratio)


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


@dataclass(frozen=True)
class WholeWindow:
    """What was counted over every row of a window of which ``current`` is only a sample.

    The monitor reads a large window in one streamed pass: it keeps a uniform sample for the
    drift tests and counts data quality and model quality over all rows as they go by, so that
    sampling never hides a handful of bad rows and memory stays bounded.
    """

    rows: int  # rows in the whole window
    quality: list[FeatureQuality]  # over every row
    model_quality: ModelQuality | None  # over every labelled row
    note: str  # how ``current`` was drawn from the window (the sample and its seed)
    # a regressor's labelled rows as numbers (columns LABEL_COLUMN, PREDICTION_COLUMN), for
    # Evidently's regression report; None for a classifier or without labels
    regression_rows: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    # a classifier's accuracy / F1 expected from its probabilities (monitoring.estimate): over
    # every row of the window, and over the labelled rows only (the realised figure's rows)
    estimated: EstimatedQuality | None = None
    estimated_labelled: EstimatedQuality | None = None


@dataclass
class CheckResult:
    """Everything the monitor flow reports about one window of logged predictions."""

    current_rows: int  # rows in the window
    analysed_rows: int  # rows the drift tests saw (after sampling)
    reference_rows: int  # reference rows the drift tests saw (after sampling)
    sampled: bool
    sample_note: str
    features: list[FeatureDrift]  # most drifted first
    drift_share: float  # drifted features / features
    prediction_drift: FeatureDrift | None
    quality: list[FeatureQuality]
    model_quality: ModelQuality | None  # None when no row of the window has a label
    snapshot: Any  # the Evidently snapshot, for save_html; None if not built
    # Evidently's regression report over a regressor's labelled rows, for save_quality_html
    quality_snapshot: Any = None
    # a classifier's estimated accuracy / F1 (WholeWindow.estimated, .estimated_labelled)
    estimated: EstimatedQuality | None = None
    estimated_labelled: EstimatedQuality | None = None

    def drifted_features(self) -> list[str]:
        """Names of the drifted features, most drifted first."""
        return [f.feature for f in self.features if f.drifted]

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """Write Evidently's HTML report; only a run with ``build_report=True`` has one."""
        if self.snapshot is None:
            raise ValueError("no Evidently report was built (checks run with build_report=False)")
        # Snapshot.save_html silently writes nothing when given a Path: hand it a str.
        self.snapshot.save_html(os.fspath(path))

    def save_quality_html(self, path: str | os.PathLike[str]) -> None:
        """Write Evidently's regression report (a regressor's window with labels only)."""
        if self.quality_snapshot is None:
            raise ValueError("no regression report was built (no labelled regression rows)")
        self.quality_snapshot.save_html(os.fspath(path))


@dataclass(frozen=True)
class Reference:
    """The training side of the comparison: its features and the model's predictions on them.

    ``predictions`` lines up with ``features`` by position; without it (or without the
    window's) there is no prediction drift.
    """

    features: pd.DataFrame
    predictions: pd.Series | None = None


@dataclass(frozen=True)
class Current:
    """A whole window of logged predictions, every part lined up with ``features`` by position.

    ``labels`` are compared as strings (a regressor's read as numbers), NaN/None marking a row
    without one; ``probabilities`` has one column per class (None for a regressor);
    ``classes`` default to the schema's.
    """

    features: pd.DataFrame
    predictions: pd.Series | None = None
    labels: pd.Series | None = None
    probabilities: pd.DataFrame | None = None
    classes: list[str] | None = None


class SampledWindow(Protocol):
    """A sample of a window with the counts made over all of it (``monitoring.window.Window``)."""

    @property
    def features(self) -> pd.DataFrame: ...  # the sample's feature columns

    @property
    def predictions(self) -> pd.Series | None: ...  # predicted classes (text) or numbers

    @property
    def whole(self) -> WholeWindow: ...  # data and model quality over every row


@dataclass(frozen=True)
class Sample:
    """A :class:`SampledWindow` put together by hand."""

    features: pd.DataFrame
    predictions: pd.Series | None
    whole: WholeWindow


def check_window(
    reference: Reference,
    current: Current,
    schema: DatasetSchema,
    *,
    max_rows: int = 50_000,
    seed: int = 42,
    build_report: bool = True,
) -> CheckResult:
    """Drift, data quality and model quality of a window held whole in memory.

    Drift runs on a uniform random sample of at most ``max_rows`` rows of each side; data
    quality counts every row of ``current``, model quality every labelled one.
    ``build_report=False`` skips Evidently's full preset (its HTML report costs as much as the
    tests) and runs the per-column drift tests only; the result then has no snapshot.
    """
    started = time.perf_counter()
    _check_inputs(reference, current.features, current.predictions, current.labels, schema)
    _check_max_rows(max_rows)
    counter = QualityCounter(schema)
    counter.add(current.features)
    estimated, estimated_labelled = _estimates(current, schema)
    whole = WholeWindow(
        rows=len(current.features),
        quality=counter.results(),
        model_quality=model_quality(
            current.labels, current.predictions, current.probabilities, current.classes, schema
        ),
        note="",
        regression_rows=regression_rows(current.labels, current.predictions, schema),
        estimated=estimated,
        estimated_labelled=estimated_labelled,
    )
    return _check_drift(
        reference,
        current.features,
        current.predictions,
        schema,
        whole,
        sampled_window=False,
        max_rows=max_rows,
        seed=seed,
        build_report=build_report,
        started=started,
    )


def check_sample(
    reference: Reference,
    sample: SampledWindow,
    schema: DatasetSchema,
    *,
    max_rows: int = 50_000,
    seed: int = 42,
    build_report: bool = True,
) -> CheckResult:
    """Drift on a sample of a window whose quality was counted over every row already.

    The result reports ``sample.whole``'s data quality, model quality and size, and says in
    its sample note what was sampled and what was not. ``max_rows``, ``seed`` and
    ``build_report`` as for :func:`check_window` (the sample may be sampled again).
    """
    started = time.perf_counter()
    _check_inputs(reference, sample.features, sample.predictions, None, schema)
    _check_max_rows(max_rows)
    return _check_drift(
        reference,
        sample.features,
        sample.predictions,
        schema,
        sample.whole,
        sampled_window=True,
        max_rows=max_rows,
        seed=seed,
        build_report=build_report,
        started=started,
    )


def _check_drift(
    reference: Reference,
    features: pd.DataFrame,
    predictions: pd.Series | None,
    schema: DatasetSchema,
    whole: WholeWindow,
    *,
    sampled_window: bool,
    max_rows: int,
    seed: int,
    build_report: bool,
    started: float,
) -> CheckResult:
    """Drift of ``features`` (and ``predictions``) against the reference; quality from ``whole``.

    ``sampled_window``: ``features`` is a sample of the window ``whole`` counted, and the
    sample note says so.
    """
    current_pos = _sample_positions(len(features), max_rows, seed)
    reference_pos = _sample_positions(len(reference.features), max_rows, seed)
    note = _sample_note(
        len(features),
        len(reference.features),
        current_pos,
        reference_pos,
        seed,
        whole if sampled_window else None,
    )

    # prediction drift needs both sides; its column sits next to the features in one report
    predicted = None
    if predictions is not None and reference.predictions is not None:
        predicted = _prediction_column(schema)
    cur = _drift_frame(features, schema, current_pos, predictions, predicted)
    ref = _drift_frame(reference.features, schema, reference_pos, reference.predictions, predicted)
    specs = _analysable(schema, cur, ref)
    kind = prediction_kind(schema)
    snapshot = _run_evidently(cur, ref, specs, predicted, kind, build_report)
    drifts = _drift_results(snapshot, specs, predicted, kind) if snapshot is not None else {}
    drift_features = sorted(
        (drifts[spec.name] for spec in specs),
        key=lambda d: (not d.drifted, -d.severity, d.feature),
    )
    drifted = sum(f.drifted for f in drift_features)
    regression = whole.regression_rows if build_report else None
    if regression is not None and len(regression) > max_rows:
        note += (
            f"; regression report: a uniform random sample of {max_rows} of {len(regression)} "
            f"labelled rows (seed {seed})"
        )
    result = CheckResult(
        current_rows=whole.rows,
        analysed_rows=len(cur),
        reference_rows=len(ref),
        sampled=whole.rows > len(cur) or reference_pos is not None,
        sample_note=note,
        features=drift_features,
        drift_share=drifted / len(drift_features) if drift_features else 0.0,
        prediction_drift=drifts.get(predicted) if predicted else None,
        quality=whole.quality,
        model_quality=whole.model_quality,
        snapshot=snapshot if build_report else None,
        quality_snapshot=(
            None
            if regression is None
            else regression_report(regression, max_rows=max_rows, seed=seed)
        ),
        estimated=whole.estimated,
        estimated_labelled=whole.estimated_labelled,
    )
    log.info(
        "checks.done",
        current_rows=result.current_rows,
        analysed_rows=result.analysed_rows,
        reference_rows=result.reference_rows,
        drifted=result.drifted_features(),
        drift_share=round(result.drift_share, 4),
        seconds=round(time.perf_counter() - started, 3),
    )
    return result


def _check_inputs(
    reference: Reference,
    current: pd.DataFrame,
    current_predictions: pd.Series | None,
    labels: pd.Series | None,
    schema: DatasetSchema,
) -> None:
    """Fail with the column or length at fault rather than deep inside Evidently."""
    for name, frame in (("reference", reference.features), ("current", current)):
        missing = [c for c in schema.feature_names if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks schema feature column(s): {', '.join(missing)}")
        if frame.empty:
            raise ValueError(f"{name} has no rows to check")
    for name, values, frame in (
        ("current_predictions", current_predictions, current),
        ("labels", labels, current),
        ("reference_predictions", reference.predictions, reference.features),
    ):
        if values is not None and len(values) != len(frame):
            raise ValueError(f"{name} has {len(values)} rows, its frame {len(frame)}")
    if labels is not None and current_predictions is None and labels.notna().any():
        raise ValueError("labels need current_predictions to score the model")


def _check_max_rows(max_rows: int) -> None:
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")


def _sample_positions(rows: int, max_rows: int, seed: int) -> Positions | None:
    """Sorted positions of a uniform random sample of ``max_rows`` rows; None: take them all."""
    if rows <= max_rows:
        return None
    positions = np.random.default_rng(seed).choice(rows, size=max_rows, replace=False)
    positions.sort()
    return positions


def _sample_note(
    current_rows: int,
    reference_rows: int,
    current_pos: Positions | None,
    reference_pos: Positions | None,
    seed: int,
    whole: WholeWindow | None = None,
) -> str:
    """Say in words what the drift tests saw and what was counted over every row.

    Stored with the run and shown with alerts: a reader must know a drift verdict came from a
    sample, and that the data quality counts did not.
    """
    parts = [whole.note] if whole is not None and whole.note else []
    if current_pos is not None:
        of_what = "sampled rows" if parts else "rows"
        parts.append(
            f"analysed a uniform random sample of {len(current_pos)} of {current_rows} "
            f"{of_what} (seed {seed})"
        )
    if reference_pos is not None:
        parts.append(
            f"reference: a uniform random sample of {len(reference_pos)} of {reference_rows} "
            f"rows (seed {seed})"
        )
    window_rows = whole.rows if whole is not None else current_rows
    if current_pos is not None or window_rows > current_rows:
        parts.append(f"data quality over all {window_rows} rows")
        labelled = whole.model_quality.labelled_rows if whole and whole.model_quality else 0
        if labelled:
            parts.append(f"model quality over all {labelled} labelled rows")
    return "; ".join(parts) or f"analysed all {current_rows} rows"


def prediction_kind(schema: DatasetSchema) -> str:
    """How the model's output is tested for drift: a regressor's number is ``numeric`` (a
    distribution test), a classifier's class ``categorical`` (a mix of classes)."""
    return "numeric" if schema.task is Task.REGRESSION else "categorical"


def _prediction_column(schema: DatasetSchema) -> str:
    """A name for the prediction that no feature already has."""
    name = PREDICTION_COLUMN
    while name in schema.feature_names:
        name += "_"
    return name


def _drift_frame(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    positions: Positions | None,
    predictions: pd.Series | None,
    prediction_column: str | None,
) -> pd.DataFrame:
    """The (sampled) feature columns typed for Evidently, plus the prediction if given.

    Rows are sampled before anything else, so only the sample is ever copied. Numeric columns
    become numbers, categorical ones strings (missing values stay missing), as the schema says.
    """
    rows = frame if positions is None else frame.iloc[positions]
    columns: dict[str, pd.Series] = {}
    for spec in schema.features:
        values = rows[spec.name]
        columns[spec.name] = _numeric(values) if spec.kind == "numeric" else _as_text(values)
    if prediction_column is not None and predictions is not None:
        picked = predictions if positions is None else predictions.iloc[positions]
        typed = _numeric(picked) if prediction_kind(schema) == "numeric" else _as_text(picked)
        columns[prediction_column] = typed.set_axis(rows.index)
    return pd.DataFrame(columns, index=rows.index)


def _numeric(values: pd.Series) -> pd.Series:
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        return values
    return pd.to_numeric(values, errors="coerce")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as strings, with missing values kept missing (``astype(str)`` makes them 'nan')."""
    values = values.astype(object)
    return values.where(values.isna(), values.astype(str))


def _analysable(schema: DatasetSchema, cur: pd.DataFrame, ref: pd.DataFrame) -> list[FeatureSpec]:
    """Features with values on both sides; Evidently refuses a column that is all missing."""
    specs = []
    for spec in schema.features:
        empty = [
            name for name, f in (("current", cur), ("reference", ref)) if f[spec.name].isna().all()
        ]
        if empty:
            log.warning("checks.feature_skipped", feature=spec.name, empty_in=empty)
        else:
            specs.append(spec)
    return specs


def _run_evidently(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    specs: list[FeatureSpec],
    prediction_column: str | None,
    prediction_kind: str,
    build_report: bool,
) -> Any:
    """Evidently's drift preset (or its per-column tests only), with tests for the verdicts.

    The prediction column is declared numeric or categorical as ``prediction_kind`` says, so
    Evidently picks the test of that kind (K-S / Wasserstein for numbers, chi-square /
    Jensen-Shannon for classes).
    """
    names = [s.name for s in specs]
    if not names and prediction_column is None:
        return None
    kinds: dict[str, str] = {s.name: s.kind for s in specs}
    if prediction_column is not None:
        kinds[prediction_column] = prediction_kind
    definition = DataDefinition(
        numerical_columns=[c for c, kind in kinds.items() if kind == "numeric"],
        categorical_columns=[c for c, kind in kinds.items() if kind == "categorical"],
    )
    metrics: list[Any] = []
    if names:
        if build_report:
            metrics.append(DataDriftPreset(columns=names))
        else:
            metrics += [ValueDrift(column=name) for name in names]
    if prediction_column is not None:
        metrics.append(ValueDrift(column=prediction_column))
    started = time.perf_counter()
    # A category the reference never had divides by zero in the chi-square test: the p-value
    # is 0 and the column drifted, which is the right verdict; numpy's warning adds nothing.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    log.debug("checks.evidently", seconds=round(time.perf_counter() - started, 3))
    return snapshot


def _drift_results(
    snapshot: Any, specs: list[FeatureSpec], prediction_column: str | None, prediction_kind: str
) -> dict[str, FeatureDrift]:
    """One FeatureDrift per ValueDrift metric of the snapshot, keyed by column."""
    exported = snapshot.dict()
    verdicts = {
        test["metric_config"]["params"].get("column"): test["status"] == "FAIL"
        for test in exported["tests"]
        if test["metric_config"]["params"].get("type", "").endswith(":ValueDrift")
    }
    kinds: dict[str, str] = {s.name: s.kind for s in specs}
    if prediction_column is not None:
        kinds[prediction_column] = prediction_kind
    drifts = {}
    for metric in exported["metrics"]:
        config = metric.get("config", {})
        column = config.get("column")
        if not config.get("type", "").endswith(":ValueDrift") or column not in kinds:
            continue
        method, threshold, score = (
            str(config["method"]),
            float(config["threshold"]),
            float(metric["value"]),
        )
        drifted = verdicts.get(column)
        if drifted is None:  # no test result: apply the method's own rule
            drifted = score < threshold if method in P_VALUE_METHODS else score >= threshold
        drifts[column] = FeatureDrift(column, kinds[column], method, threshold, score, drifted)
    return drifts


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
    numbers = _numeric(values)
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


def _estimates(
    current: Current, schema: DatasetSchema
) -> tuple[EstimatedQuality | None, EstimatedQuality | None]:
    """A classifier's estimate over every row of ``current``, and over its labelled rows."""
    probabilities = current.probabilities
    if schema.task is Task.REGRESSION or probabilities is None:
        return None, None
    classes = current.classes or schema.classes
    labelled = None
    if current.labels is not None:
        labelled = estimate_quality(probabilities[current.labels.notna().to_numpy()], classes)
    return estimate_quality(probabilities, classes), labelled


def classification_quality(
    labels: pd.Series,
    predictions: pd.Series,
    probabilities: pd.DataFrame | None,
    classes: list[str] | None,
    schema: DatasetSchema,
) -> ModelQuality | None:
    """Accuracy, F1 and ROC AUC on the labelled rows, the way ``training.evaluate`` scores.

    Binary: F1 and ROC AUC of the positive class, the larger label sorted as text. Multi-class:
    macro F1 and one-vs-rest macro ROC AUC.
    """
    labelled = labels.notna().to_numpy()
    if not labelled.any():
        return None
    truth = _class_text(labels[labelled])
    predicted = _class_text(predictions[labelled])
    known = sorted(map(str, classes or schema.classes))
    binary = len(known) == 2
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": known[1]} if binary else {"average": "macro"}
    )
    return ModelQuality(
        labelled_rows=int(labelled.sum()),
        metrics={
            ACCURACY: float(accuracy_score(truth, predicted)),
            F1: float(f1_score(truth, predicted, zero_division=0, **averaging)),
            ROC_AUC: _roc_auc(truth, probabilities, labelled, known),
        },
    )


def regression_quality(labels: pd.Series, predictions: pd.Series) -> ModelQuality | None:
    """RMSE, MAE, R2 and error bias (mean of prediction - label) over the labelled rows.

    Labels come back from ``/feedback`` as text and predictions as JSON numbers: both are read
    with ``pd.to_numeric``. A label that is no number cannot be scored: its row is left out and
    counted in a warning. Scored with the scikit-learn functions training uses, so the figures
    compare with the champion's holdout metrics.
    """
    truth = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
    predicted = pd.to_numeric(predictions, errors="coerce").to_numpy(dtype=float)
    given = labels.notna().to_numpy()
    scored = given & ~np.isnan(truth) & ~np.isnan(predicted)
    if (given & ~scored).any():
        log.warning("checks.rows_not_scored", rows=int((given & ~scored).sum()), why="not numbers")
    if not scored.any():
        return None
    truth, predicted = truth[scored], predicted[scored]
    r2 = None
    if len(truth) >= 2 and np.ptp(truth) > 0:  # R2 is undefined for one row or constant labels
        r2 = float(r2_score(truth, predicted))
    return ModelQuality(
        labelled_rows=int(scored.sum()),
        metrics={
            RMSE: float(root_mean_squared_error(truth, predicted)),
            MAE: float(mean_absolute_error(truth, predicted)),
            R2: r2,
            ERROR_BIAS: float(np.mean(predicted - truth)),
        },
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
    positions = _sample_positions(len(rows), max_rows, seed)
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


def _class_text(values: pd.Series) -> npt.NDArray[np.str_]:
    """Class labels as text; whole floats lose their '.0' (a NaN turns int labels into floats)."""
    if ptypes.is_float_dtype(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
        values = values.astype("int64")
    return np.asarray(values.astype(str), dtype=str)


def _roc_auc(
    truth: npt.NDArray[np.str_],
    probabilities: pd.DataFrame | None,
    labelled: npt.NDArray[np.bool_],
    classes: list[str],
) -> float | None:
    """ROC AUC on the labelled rows that have probabilities; None when it is undefined."""
    if probabilities is None:
        return None
    if len(probabilities) != len(labelled):
        raise ValueError(f"probabilities has {len(probabilities)} rows, labels {len(labelled)}")
    scores = probabilities.rename(columns=str)
    absent = [c for c in classes if c not in scores.columns]
    if absent:
        log.warning("checks.roc_auc_skipped", reason="no probability column", classes=absent)
        return None
    scores = scores.loc[labelled, classes].to_numpy(dtype=float)
    known = ~np.isnan(scores).any(axis=1)
    truth, scores = truth[known], scores[known]
    if len(np.unique(truth)) < 2:
        return None  # one class only: ROC AUC is undefined
    try:
        if len(classes) == 2:
            return float(roc_auc_score(truth == classes[1], scores[:, 1]))
        return float(
            roc_auc_score(truth, scores, multi_class="ovr", average="macro", labels=classes)
        )
    except ValueError as exc:  # e.g. a class with no row, labels outside the classes
        log.warning("checks.roc_auc_skipped", reason=str(exc))
        return None
