"""Drift, data quality and model quality of a window of logged predictions, put together.

Pure computation over pandas frames, so the monitor flow owns every side effect (database,
MLflow, alerts) and these checks can be tested on plain tables. Each concern has its module:

- :mod:`~mlops_stack.monitoring.drift`: the corrected two-sample tests, the effect floor and
  Evidently's drift report, on a uniform random sample of the window (drift tests gain nothing
  from a million rows that 50,000 do not already show);
- :mod:`~mlops_stack.monitoring.quality`: data quality over every row, model quality over every
  labelled row (scored by :mod:`mlops_stack.metrics`, as training scores the holdout), and
  Evidently's regression report;
- here: the inputs (:class:`Reference`, :class:`Current`), the result (:class:`CheckResult`)
  and the orchestration that samples, tests and says in words what was sampled.

A window too large to hold in memory is read in chunks (``monitoring.window``): the quality
counts accumulate chunk by chunk (:class:`~mlops_stack.monitoring.quality.QualityCounter`) and
arrive here precomputed (:class:`WholeWindow`) next to the uniform sample the drift tests run
on: :func:`check_sample`. A window held whole in memory goes to :func:`check_window`, which
counts them itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pandas as pd

from mlops_stack.data import DatasetSchema
from mlops_stack.logs import get_logger
from mlops_stack.monitoring.drift import (
    DEFAULT_DRIFT_ALPHA,
    DEFAULT_DRIFT_MIN_EFFECT,
    DriftRule,
    FeatureDrift,
    analysable,
    column_drift,
    drift_frame,
    drift_report,
    prediction_column,
    prediction_kind,
)
from mlops_stack.monitoring.estimate import EstimatedQuality, estimate_quality
from mlops_stack.monitoring.frames import Positions, sample_positions
from mlops_stack.monitoring.quality import (
    FeatureQuality,
    ModelQuality,
    QualityCounter,
    model_quality,
    regression_report,
    regression_rows,
)
from mlops_stack.names import Task

log = get_logger(__name__)


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
    current_pos = sample_positions(len(features), max_rows, seed)
    reference_pos = sample_positions(len(reference.features), max_rows, seed)
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
        predicted = prediction_column(schema)
    cur = drift_frame(features, schema, current_pos, predictions, predicted)
    ref = drift_frame(reference.features, schema, reference_pos, reference.predictions, predicted)
    specs = analysable(schema, cur, ref)
    kinds: dict[str, str] = {spec.name: spec.kind for spec in specs}
    if predicted is not None:
        kinds[predicted] = prediction_kind(schema)
    rule = replace(rule, tests=len(kinds))
    drifts = {
        column: column_drift(column, kind, ref[column], cur[column], rule)
        for column, kind in kinds.items()
    }
    snapshot = drift_report(cur, ref, kinds, predicted, rule) if build_report else None
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
