"""Drift, data quality and model quality of a window of logged predictions.

Pure computation over pandas frames, so the monitor flow owns every side effect (database,
MLflow, alerts) and these checks can be tested on plain tables.

- **Drift** runs on a uniform random sample of the window: drift tests gain nothing from a
  million rows that 50,000 do not already show. Every column (each feature, and the model's
  prediction) gets one two-sample test of its kind: Kolmogorov-Smirnov for numbers, a
  chi-square test of the 2 x k contingency table for categories (:func:`column_drift`). The
  tests are corrected for being run together (Bonferroni): with m columns each runs at
  ``alpha / m``, so that clean traffic flags any column at all in at most ``alpha`` of runs.
  Significance alone is not drift: a large window makes a harmless move significant, so a
  column drifts only when it also moved by at least ``min_effect`` (:class:`DriftRule`): the
  Wasserstein distance in reference standard deviations, or the total variation distance of
  the category shares. The verdicts are computed here with SciPy, milliseconds a window;
  Evidently builds the HTML report with the very same tests and thresholds (its own chi-square
  is a goodness-of-fit test that takes the reference's shares as exact, which false-alarms when
  the window is much larger than the reference, so the two-sample test is registered with it).
  docs/monitoring.md, "Can you trust a drift alarm?", has the measured false-alarm rate and power.
- **Data quality** (missing share, values outside the training range, categories training never
  saw) is checked against the schema saved with the model, in plain pandas over every row: it is
  cheap, and a handful of bad rows must not be sampled away.
- **Model quality** uses the rows that have a label, scored like ``training.evaluate`` so that
  the numbers compare with the holdout metrics logged at training time: accuracy, F1 and ROC
  AUC of a classifier; RMSE, MAE, R2 and the error bias (mean of prediction - label) of a
  regressor, named as ``mlops_stack.names`` (and Evidently's regression metrics) name them.
- **Prediction drift** compares the model's outputs with its outputs on the reference: the mix
  of predicted classes (a categorical test), or the distribution of a regressor's predicted
  numbers (a numeric test), as one of the m corrected tests.

A window too large to hold in memory is read in chunks (``monitoring.window``): the quality
counts accumulate chunk by chunk (:class:`QualityCounter`) and arrive here precomputed
(:class:`WholeWindow`) next to the uniform sample the drift tests run on: :func:`check_sample`.
A window held whole in memory goes to :func:`check_window`, which counts them itself.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset, RegressionPreset
from pandas.api import types as ptypes
from scipy import stats

from mlops_stack import metrics
from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema, FeatureSpec
from mlops_stack.logs import get_logger
from mlops_stack.monitoring.estimate import EstimatedQuality, estimate_quality
from mlops_stack.names import Task, quality_metrics

log = get_logger(__name__)

Positions = npt.NDArray[np.int64]  # sorted row positions of a sample

PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"
MAX_UNSEEN_EXAMPLES = 5

DEFAULT_DRIFT_ALPHA = 0.05  # MLOPS_DRIFT_ALPHA's default
DEFAULT_DRIFT_MIN_EFFECT = 0.1  # MLOPS_DRIFT_MIN_EFFECT's default
MIN_EXPECTED = 5.0  # chi-square: categories expected fewer times than this are pooled

# The tests, by the display name stored with each column's result (Evidently's for K-S)
KS_TEST = "K-S p_value"
CHI_SQUARE_TEST = "chi-square two-sample p_value"
# ... and by the name Evidently's report knows them under ("ks" is its own; the chi-square is
# registered below, since Evidently's "chisquare" takes the reference's shares as exact)
EVIDENTLY_METHODS = {"numeric": "ks", "categorical": "chisquare_two_sample"}

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
        CHI_SQUARE_TEST,
    }
)


@dataclass(frozen=True)
class DriftRule:
    """When a column counts as drifted: significant after the correction, and moved enough.

    Why both: ``tests`` p-values at ``alpha`` each would flag some column of a clean window
    most of the time (30 independent columns at 0.05: 1 - 0.95**30 = 79 % of runs), so each runs at
    ``alpha / tests`` (Bonferroni: at most ``alpha`` of clean runs flag anything, whatever the
    tests' dependence). And a p-value measures evidence, not size: on 20,000 rows a move of
    0.05 standard deviations is significant and harmless, so the column must also have moved
    by at least ``min_effect``.
    """

    alpha: float = DEFAULT_DRIFT_ALPHA
    min_effect: float = DEFAULT_DRIFT_MIN_EFFECT
    tests: int = 1  # columns tested together: the features and the prediction

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"drift alpha must lie between 0 and 1, not {self.alpha}")
        if self.min_effect < 0:
            raise ValueError(f"drift min effect must be at least 0, not {self.min_effect}")

    @property
    def threshold(self) -> float:
        """The p-value at or below which one column's test is significant."""
        return self.alpha / max(self.tests, 1)

    def describe(self) -> str:
        """The rule in words, for the status reason and the alert."""
        return (
            f"corrected for {self.tests} tests at alpha {self.alpha:g}: "
            f"p <= {self.threshold:.2g} and effect >= {self.min_effect:g}"
        )


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift test: the method, its threshold, score, verdict and effect size.

    ``score`` is the test's p-value (runs stored before the correction may hold an Evidently
    distance: see :attr:`p_value`); ``threshold`` the corrected significance level;
    ``effect`` how far the column moved (Wasserstein distance in reference standard deviations
    for numbers, total variation distance for categories; None for runs stored before it).
    ``drifted``: significant and an effect of at least the rule's ``min_effect``.
    """

    feature: str
    kind: str  # "numeric" | "categorical"
    method: str
    threshold: float
    score: float
    drifted: bool
    effect: float | None = None

    @property
    def p_value(self) -> bool:
        """True when the score is a p-value (drift = small score), False for a distance."""
        return self.method in P_VALUE_METHODS

    @property
    def significant(self) -> bool:
        """The test alone says the column changed (before the effect floor)."""
        if self.p_value:
            return self.score <= self.threshold
        return self.score >= self.threshold

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
    # how the drift verdicts were reached (the correction, the effect floor); None: no test ran
    drift_rule: DriftRule | None = None

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
    drift_alpha: float = DEFAULT_DRIFT_ALPHA,
    drift_min_effect: float = DEFAULT_DRIFT_MIN_EFFECT,
) -> CheckResult:
    """Drift, data quality and model quality of a window held whole in memory.

    Drift runs on a uniform random sample of at most ``max_rows`` rows of each side; data
    quality counts every row of ``current``, model quality every labelled one.
    ``build_report=False`` skips Evidently's report (its plots cost seconds; the tests
    milliseconds); the result then has no snapshot. ``drift_alpha`` and ``drift_min_effect``
    make the :class:`DriftRule` (``MLOPS_DRIFT_ALPHA``, ``MLOPS_DRIFT_MIN_EFFECT``).
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
        rule=DriftRule(drift_alpha, drift_min_effect),
    )


def check_sample(
    reference: Reference,
    sample: SampledWindow,
    schema: DatasetSchema,
    *,
    max_rows: int = 50_000,
    seed: int = 42,
    build_report: bool = True,
    drift_alpha: float = DEFAULT_DRIFT_ALPHA,
    drift_min_effect: float = DEFAULT_DRIFT_MIN_EFFECT,
) -> CheckResult:
    """Drift on a sample of a window whose quality was counted over every row already.

    The result reports ``sample.whole``'s data quality, model quality and size, and says in
    its sample note what was sampled and what was not. ``max_rows``, ``seed``,
    ``build_report`` and the drift rule as for :func:`check_window` (the sample may be sampled
    again).
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
        rule=DriftRule(drift_alpha, drift_min_effect),
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
    rule: DriftRule,
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
    kinds: dict[str, str] = {spec.name: spec.kind for spec in specs}
    if predicted is not None:
        kinds[predicted] = prediction_kind(schema)
    rule = replace(rule, tests=len(kinds))
    drifts = {
        column: column_drift(column, kind, ref[column], cur[column], rule)
        for column, kind in kinds.items()
    }
    snapshot = _evidently_report(cur, ref, kinds, predicted, rule) if build_report else None
    drift_features = sorted(
        (drifts[spec.name] for spec in specs),
        # most moved first: p-values saturate (many are 0.0 under a large shift), the effect
        # says how far a column moved; the test's severity breaks ties
        key=lambda d: (not d.drifted, -(d.effect or 0.0), -d.severity, d.feature),
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
        snapshot=snapshot,
        quality_snapshot=(
            None
            if regression is None
            else regression_report(regression, max_rows=max_rows, seed=seed)
        ),
        estimated=whole.estimated,
        estimated_labelled=whole.estimated_labelled,
        drift_rule=rule if kinds else None,
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
    """Features with values on both sides: a column all missing (or infinite) has no test."""
    specs = []
    for spec in schema.features:
        empty = [
            name
            for name, f in (("current", cur), ("reference", ref))
            if _testable(f[spec.name], spec.kind).empty
        ]
        if empty:
            log.warning("checks.feature_skipped", feature=spec.name, empty_in=empty)
        else:
            specs.append(spec)
    return specs


def _testable(values: pd.Series, kind: str) -> pd.Series:
    """The values a test compares: missing and infinite values dropped (as Evidently does)."""
    if kind == "numeric":
        numbers = _numeric(values).astype(float)
        return numbers[np.isfinite(numbers.to_numpy())]
    return values.dropna().astype(str)


def column_drift(
    column: str, kind: str, reference: pd.Series, current: pd.Series, rule: DriftRule
) -> FeatureDrift:
    """One column's two-sample test, effect size and verdict under ``rule``.

    Numbers: Kolmogorov-Smirnov (SciPy's ``ks_2samp``, the function Evidently's ``ks`` calls)
    and the Wasserstein distance in reference standard deviations. Categories:
    :func:`chi_square_two_sample` and :func:`total_variation`.
    """
    ref, cur = _testable(reference, kind), _testable(current, kind)
    if kind == "numeric":
        with warnings.catch_warnings():
            # with many ties SciPy falls back to the asymptotic p-value, and says so each time
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful")
            p = float(stats.ks_2samp(ref.to_numpy(), cur.to_numpy()).pvalue)
        method, effect = KS_TEST, normed_wasserstein(ref, cur)
    else:
        method, p, effect = (
            CHI_SQUARE_TEST,
            chi_square_two_sample(ref, cur),
            total_variation(ref, cur),
        )
    drifted = p <= rule.threshold and effect >= rule.min_effect
    return FeatureDrift(column, kind, method, rule.threshold, p, drifted, effect)


def normed_wasserstein(reference: pd.Series, current: pd.Series) -> float:
    """Wasserstein distance between the samples in reference standard deviations.

    How far, on average, values had to move: 1.0 for a whole-distribution shift of one std.
    A constant reference has no scale: 0 if nothing moved, else infinity.
    """
    distance = float(stats.wasserstein_distance(reference.to_numpy(), current.to_numpy()))
    spread = float(np.std(reference.to_numpy()))
    if spread > 0:
        return distance / spread
    return 0.0 if distance == 0 else math.inf


def total_variation(reference: pd.Series, current: pd.Series) -> float:
    """Total variation distance of the category shares: the share of rows that would have to
    change category to turn one mix into the other (0 to 1)."""
    shares = pd.concat(
        [reference.value_counts(normalize=True), current.value_counts(normalize=True)], axis=1
    ).fillna(0.0)
    return float(0.5 * np.abs(shares.iloc[:, 0] - shares.iloc[:, 1]).sum())


def chi_square_two_sample(reference: pd.Series, current: pd.Series) -> float:
    """P-value of Pearson's chi-square test that both samples share one category mix.

    Both sides are samples: the 2 x k contingency table's test accounts for the reference's
    own noise, where a goodness-of-fit test against the reference's shares (Evidently's
    ``chisquare``) does not and false-alarms once the window outgrows the reference (35 % of
    clean runs for a 2-class column, 5000 window rows against 455: docs/monitoring.md).
    Categories expected fewer than ``MIN_EXPECTED`` times on the smaller side are pooled into
    one, where the chi-square approximation holds; one category left means nothing to test.
    """
    counts = pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0.0)
    counts = _pool_rare(counts)
    if len(counts) < 2:
        return 1.0
    table = counts.to_numpy(dtype=float).T
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _pool_rare(counts: pd.DataFrame) -> pd.DataFrame:
    """``counts`` (category x side) with the rarely expected categories summed into one row."""
    sides = counts.sum(axis=0)
    expected_low = counts.sum(axis=1) * float(sides.min()) / float(sides.sum())
    rare = expected_low < MIN_EXPECTED
    if rare.sum() < 2:
        return counts
    pooled = counts[rare].sum(axis=0).to_frame().T
    return pd.concat([counts[~rare], pooled], ignore_index=True)


def _chi_square_for_evidently(
    reference_data: pd.Series, current_data: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    p = chi_square_two_sample(reference_data.astype(str), current_data.astype(str))
    return p, p <= threshold


register_stattest(
    StatTest(
        name=EVIDENTLY_METHODS["categorical"],
        display_name=CHI_SQUARE_TEST,
        allowed_feature_types=[ColumnType.Categorical],
    ),
    default_impl=_chi_square_for_evidently,
)


def _evidently_report(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    kinds: dict[str, str],
    prediction_column: str | None,
    rule: DriftRule,
) -> Any:
    """Evidently's drift preset over the features (and a ValueDrift for the prediction), each
    column tested as :func:`column_drift` tests it, at the corrected threshold, so that the
    report's p-values and significance agree with the stored verdicts. The effect floor is
    the monitor's own: the report shows significance, the run's rows the verdict."""
    if not kinds:
        return None
    definition = DataDefinition(
        numerical_columns=[c for c, kind in kinds.items() if kind == "numeric"],
        categorical_columns=[c for c, kind in kinds.items() if kind == "categorical"],
    )
    features = [c for c in kinds if c != prediction_column]
    metrics: list[Any] = []
    if features:
        metrics.append(
            DataDriftPreset(
                columns=features,
                per_column_method={c: EVIDENTLY_METHODS[kinds[c]] for c in features},
                per_column_threshold=dict.fromkeys(features, rule.threshold),
            )
        )
    if prediction_column is not None:
        method = EVIDENTLY_METHODS[kinds[prediction_column]]
        metrics.append(
            ValueDrift(column=prediction_column, method=method, threshold=rule.threshold)
        )
    started = time.perf_counter()
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    log.debug("checks.evidently", seconds=round(time.perf_counter() - started, 3))
    return snapshot


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
