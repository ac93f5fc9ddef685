"""Drift: has a window's distribution moved away from the training reference?

Every column (each feature, and the model's prediction) gets one two-sample test of its kind:
Kolmogorov-Smirnov for numbers, a chi-square test of the 2 x k contingency table for categories
(:func:`column_drift`). The tests are corrected for being run together (Bonferroni): with m
columns each runs at ``alpha / m``, so that clean traffic flags any column at all in at most
``alpha`` of runs. Significance alone is not drift: a large window makes a harmless move
significant, so a column drifts only when it also moved by at least ``min_effect``
(:class:`DriftRule`): the Wasserstein distance in reference standard deviations, or the total
variation distance of the category shares. The verdicts are computed here with SciPy,
milliseconds a window; Evidently builds the HTML report with the very same tests and thresholds
(:func:`drift_report`; its own chi-square is a goodness-of-fit test that takes the reference's
shares as exact, which false-alarms when the window is much larger than the reference, so the
two-sample test is registered with it). docs/monitoring.md, "Can you trust a drift alarm?", has
the measured false-alarm rate and power.

**Prediction drift** compares the model's outputs with its outputs on the reference: the mix of
predicted classes (a categorical test), or the distribution of a regressor's predicted numbers
(a numeric test), as one of the m corrected tests.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset
from scipy import stats

from mlops_stack.data import DatasetSchema, FeatureSpec
from mlops_stack.logs import get_logger
from mlops_stack.monitoring.frames import PREDICTION_COLUMN, Positions, as_text, numeric
from mlops_stack.names import Task

log = get_logger(__name__)

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


def prediction_kind(schema: DatasetSchema) -> str:
    """How the model's output is tested for drift: a regressor's number is ``numeric`` (a
    distribution test), a classifier's class ``categorical`` (a mix of classes)."""
    return "numeric" if schema.task is Task.REGRESSION else "categorical"


def prediction_column(schema: DatasetSchema) -> str:
    """A name for the prediction that no feature already has."""
    name = PREDICTION_COLUMN
    while name in schema.feature_names:
        name += "_"
    return name


def drift_frame(
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
        columns[spec.name] = numeric(values) if spec.kind == "numeric" else as_text(values)
    if prediction_column is not None and predictions is not None:
        picked = predictions if positions is None else predictions.iloc[positions]
        typed = numeric(picked) if prediction_kind(schema) == "numeric" else as_text(picked)
        columns[prediction_column] = typed.set_axis(rows.index)
    return pd.DataFrame(columns, index=rows.index)


def analysable(schema: DatasetSchema, cur: pd.DataFrame, ref: pd.DataFrame) -> list[FeatureSpec]:
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
        numbers = numeric(values).astype(float)
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


def drift_report(
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
