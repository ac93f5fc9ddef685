"""A traffic simulator: the demo's stand-in for real users, and a tool to test a deployment.

It sends *fresh* rows to the predictor over HTTP at a given rate, and each labelled row's true
label to ``/feedback`` after a delay. It talks HTTP only, so it works against the embedded
predictor, the compose stack's nginx, or any deployment of it.

Fresh rows come from :class:`~mlops_stack.synthetic.RowGenerator` fitted on the whole table
(features and target): a smoothed bootstrap, so no row is ever sent twice. Cycling a small
holdout instead sent each row several times, and the drift tests read the repeats as a changed
distribution (issue 13: 17 of 30 features "drifted" on clean traffic). ``--drift X:shift=D``
is a population shift through the generator: X moves D standard deviations, each numeric
feature correlated with it moves ``D * corr`` of its own, nothing else moves. ``scale`` and
``mix`` apply to the fresh rows as given. Discrete numeric columns (few distinct values: flags,
counts, codes) are copied from the source row, not jittered (``synthetic.discrete_columns``).

Labels. Under a covariate shift a row's label is its source row's: the shift is in what is
measured, the true outcome is unchanged. ``--concept X:threshold=D`` changes the outcome
instead: labels come from :meth:`~mlops_stack.synthetic.ConceptShift.relabel` on the rows as
sent. Only rows drawn from the training split's holdout (the same seeded split the train flow
makes) carry a label; the others go unlabelled. The jitter makes every row new, but not new
to a model that memorises: measured on the built-in tables (4,000 fresh rows, 3 seeds), rows
drawn from training rows scored a random forest regressor's RMSE 35 against 54 on its holdout,
and a gradient boosting classifier's accuracy 0.99 against 0.96, so their labels would flatter
the quality the monitor compares with the holdout figure. Rows drawn from held-out rows score
as the holdout does (RMSE 53-55, accuracy 0.94-0.95).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast, get_args

import httpx
import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlops_stack.backoff import Backoff
from mlops_stack.synthetic import ConceptShift, RowGenerator

if TYPE_CHECKING:
    from mlops_stack.data import Dataset
    from mlops_stack.settings import Settings
    from mlops_stack.training import Split

PendingLabel = tuple[float, str, object]  # (when it is due, request id, label)
DriftKind = Literal["shift", "scale", "mix"]
FORMS = "FEATURE:shift=STDS, FEATURE:scale=FACTOR or FEATURE:mix=CATEGORY@SHARE"
NUMERIC_KINDS = "FEATURE:shift=STDS, FEATURE:scale=FACTOR or FEATURE:mix=NUMBER@SHARE"
CATEGORICAL_KINDS = "FEATURE:mix=CATEGORY@SHARE"
CONCEPT_FORM = "FEATURE:threshold=STDS"
MOVED_AT_LEAST = 0.1
"""Movements below this many standard deviations are not listed as moved."""


class SimulationError(ValueError):
    """Traffic that cannot be made from the given table; the message says why, in one line."""


class DriftError(SimulationError):
    """A drift that cannot be read or cannot apply to its feature."""


@dataclass(frozen=True)
class Drift:
    """One change applied to one feature of every sent row.

    ``shift``: add ``value`` standard deviations; ``scale``: multiply by ``value``;
    ``mix``: replace the value with ``category`` in a share ``value`` of the rows. Numeric
    features take all three (``mix`` with a number), categorical features only ``mix``.
    """

    feature: str
    kind: DriftKind
    value: float
    category: str | None = None

    @classmethod
    def parse(cls, text: str) -> Drift:
        """``"mean radius:shift=2"``, ``"income:scale=1.5"``, ``"plan:mix=premium@0.8"``."""
        feature, colon, change = text.rpartition(":")
        kind, equals, argument = change.partition("=")
        if not (feature and colon and equals):
            raise DriftError(f"cannot read drift {text!r}: use {FORMS}")
        if kind not in get_args(DriftKind):
            raise DriftError(f"cannot read drift {text!r}: unknown kind {kind!r}; use {FORMS}")
        try:
            if kind == "mix":
                category, _, share = argument.partition("@")
                drift = cls(feature, "mix", float(share or 1.0), category)
            else:
                drift = cls(feature, cast(DriftKind, kind), float(argument))
        except ValueError:
            raise DriftError(f"cannot read drift {text!r}: not a number; use {FORMS}") from None
        drift._check_value(text)
        return drift

    def _check_value(self, text: str) -> None:
        problem = ""
        if not math.isfinite(self.value):
            problem = "the number must be finite"
        elif self.kind == "mix" and not 0 <= self.value <= 1:
            problem = "the share must be within 0 and 1"
        elif self.kind == "mix" and not self.category:
            problem = "name the category"
        if problem:
            raise DriftError(f"cannot read drift {text!r}: {problem}; use {FORMS}")


def parse_drifts(texts: list[str]) -> list[Drift]:
    """Every ``--drift`` read, or :class:`DriftError` for the first that cannot be."""
    return [Drift.parse(text) for text in texts]


def is_numeric(column: pd.Series) -> bool:
    """Whether a column is a number to shift and scale (booleans are categories here)."""
    return bool(ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column))


def check_drift(drift: Drift, reference: pd.DataFrame) -> None:
    """Raise :class:`DriftError` when ``drift`` cannot apply to its feature of ``reference``.

    The message names the feature and the kinds that apply to it, so a user who asked to shift
    a categorical feature learns how to drift it instead.
    """
    if drift.feature not in reference.columns:
        names = list(map(str, reference.columns))
        have = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        raise DriftError(f"no feature {drift.feature!r} to drift; the table's features: {have}")
    column = reference[drift.feature]
    if is_numeric(column):
        if drift.kind == "mix" and _number(drift.category) is None:
            raise DriftError(
                f"cannot mix {drift.category!r} into {drift.feature!r}: it is a numeric feature; "
                f"numeric features take {NUMERIC_KINDS}"
            )
        return
    if drift.kind != "mix":
        seen = column.dropna().astype(str).value_counts().index[:5]
        example = seen[-1] if len(seen) else "CATEGORY"
        raise DriftError(
            f"cannot {drift.kind} {drift.feature!r}: it is a categorical feature "
            f"(e.g. {', '.join(seen)}); categorical features take {CATEGORICAL_KINDS}, "
            f"e.g. --drift '{drift.feature}:mix={example}@0.5'"
        )


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def apply_drift(
    rows: pd.DataFrame, drifts: list[Drift], reference: pd.DataFrame, seed: int
) -> pd.DataFrame:
    """The rows with every drift applied; standard deviations come from ``reference``.

    Every drift is checked against its feature first (:func:`check_drift`), so nothing is
    sent when one of them cannot apply.
    """
    for drift in drifts:
        check_drift(drift, reference)
    rng = np.random.default_rng(seed)
    rows = rows.copy()
    for drift in drifts:
        column = rows[drift.feature]
        if drift.kind == "shift":
            std = float(reference[drift.feature].std())
            rows[drift.feature] = column + drift.value * (0.0 if math.isnan(std) else std)
        elif drift.kind == "scale":
            rows[drift.feature] = column * drift.value
        else:
            picked = rng.random(len(rows)) < drift.value
            value = _number(drift.category) if is_numeric(column) else drift.category
            rows[drift.feature] = column.astype(object).where(~picked, value)
            if is_numeric(reference[drift.feature]):
                rows[drift.feature] = pd.to_numeric(rows[drift.feature])
    return rows


def split_like_training(dataset: Dataset, settings: Settings) -> Split:
    """The train/holdout split the train flow makes of this table (same share, same seed, and
    the task inferred the same way: stratified for classes, not for a number).

    Its holdout says which rows the model has not seen: only fresh rows drawn from those carry
    labels (see the module's docstring).
    """
    from mlops_stack.data import infer_task
    from mlops_stack.training import split_data

    _check_target(dataset)
    try:
        return split_data(
            dataset.features,
            dataset.labels,
            test_size=settings.test_size,
            seed=settings.random_seed,
            task=infer_task(dataset.labels, settings.task),
        )
    except ValueError as exc:  # e.g. missing labels, or a class with one row to stratify
        raise SimulationError(f"cannot split the table as training does: {exc}") from None


def _check_target(dataset: Dataset) -> None:
    if dataset.target not in dataset.frame.columns:
        have = ", ".join(map(str, dataset.frame.columns[:20]))
        raise SimulationError(f"no column {dataset.target!r} (the target) in the table: {have}")


@dataclass(frozen=True)
class Concept:
    """``--concept FEATURE:threshold=STDS``: the class boundary on FEATURE moves STDS standard
    deviations (for a number: FEATURE's effect on the target grows), see
    :class:`~mlops_stack.synthetic.ConceptShift`."""

    feature: str
    stds: float

    @classmethod
    def parse(cls, text: str) -> Concept:
        feature, colon, change = text.rpartition(":")
        kind, equals, argument = change.partition("=")
        if not (feature and colon and equals and kind == "threshold"):
            raise SimulationError(f"cannot read concept {text!r}: use {CONCEPT_FORM}")
        try:
            stds = float(argument)
        except ValueError:
            raise SimulationError(
                f"cannot read concept {text!r}: not a number; use {CONCEPT_FORM}"
            ) from None
        if not math.isfinite(stds):
            raise SimulationError(f"cannot read concept {text!r}: the number must be finite")
        return cls(feature, stds)

    def fit(self, dataset: Dataset) -> ConceptShift:
        """The moved concept on ``dataset`` (the whole table), or a readable error."""
        if self.feature not in dataset.features.columns:
            names = ", ".join(map(str, dataset.features.columns[:20]))
            raise SimulationError(f"no feature {self.feature!r} for --concept; have: {names}")
        try:
            return ConceptShift.fit(
                dataset.frame.dropna(subset=[dataset.target]),
                dataset.target,
                self.feature,
                self.stds,
            )
        except ValueError as exc:
            raise SimulationError(str(exc)) from None


@dataclass(frozen=True)
class Traffic:
    """Fresh rows to send, in order, and each one's label (None: send no label for it).

    ``moved`` is how far each numeric feature's population moved, in its standard deviations
    (the covariate shift); ``concept`` the moved concept, if any, and ``relabelled`` how many of
    the labelled rows it changed.
    """

    features: pd.DataFrame
    labels: pd.Series
    moved: pd.Series
    concept: ConceptShift | None = None
    relabelled: int = 0

    @property
    def labelled(self) -> int:
        return int(self.labels.notna().sum())

    def movements(self, at_least: float = MOVED_AT_LEAST) -> list[tuple[str, float]]:
        """(feature, stds) for each feature the covariate shift moves by ``at_least`` standard
        deviations or more, largest first."""
        moved = self.moved[self.moved.abs() >= at_least]
        order = moved.abs().sort_values(ascending=False).index
        return [(str(f), float(moved[f])) for f in order]


def fresh_traffic(
    dataset: Dataset,
    held_out: Split,
    count: int,
    *,
    seed: int,
    drifts: list[Drift] | None = None,
    concept: ConceptShift | None = None,
) -> Traffic:
    """``count`` fresh rows of ``dataset`` (see the module docstring): shifts move the
    population through the generator, scale and mix apply to the fresh rows, ``concept``
    relabels them; labels only for rows drawn from ``held_out``'s holdout."""
    drifts = drifts or []
    reference = dataset.features
    for drift in drifts:
        check_drift(drift, reference)
    _check_target(dataset)
    shifts: dict[str, float] = {}
    for drift in drifts:
        if drift.kind == "shift":
            shifts[drift.feature] = shifts.get(drift.feature, 0.0) + drift.value
    generator = RowGenerator.fit(dataset.frame, target=dataset.target)
    moved = generator.movement(shifts) if shifts else pd.Series(dtype=float)
    sample, sources = generator.sample_with_sources(count, seed=seed, shifts=shifts)
    features = sample[list(reference.columns)].copy()
    others = [d for d in drifts if d.kind != "shift"]
    features = apply_drift(features, others, reference, seed)
    labels = sample[dataset.target].astype(object)
    held = dataset.frame.index[sources].isin(held_out.X_test.index)
    relabelled = 0
    if concept is not None:
        changed = concept.relabel(features, sample[dataset.target]).astype(object)
        relabelled = int(((changed != labels) & held & labels.notna()).sum())
        labels = changed
    labels = labels.where(held & labels.notna().to_numpy(), None)
    return Traffic(features, labels, moved, concept, relabelled)


@dataclass
class SimulationReport:
    """What happened: requests sent and answered, labels delivered, versions that answered."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    labels_sent: int = 0
    labels_unknown: int = 0
    versions: Counter[str] = field(default_factory=Counter)  # model version -> answers
    errors: Counter[str] = field(default_factory=Counter)  # error kind -> occurrences
    seconds: float = 0.0
    unlogged: int | None = None  # answered rows the predictor had not yet logged (None: unknown)
    last_version: str | None = None  # the version named by the last answer


def _json_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


class Simulator:
    """Sends rows at ``rate`` per second and their labels ``label_delay`` seconds later."""

    def __init__(
        self,
        base_url: str,
        rows: pd.DataFrame,
        labels: pd.Series | None,
        *,
        rate: float,
        label_delay: float = 0.0,
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.rows = rows.reset_index(drop=True)
        self.labels = None if labels is None else labels.reset_index(drop=True)
        self.rate = rate
        self.label_delay = label_delay
        self.timeout = timeout

    def run(self, count: int, max_seconds: float | None = None) -> SimulationReport:
        """Send ``count`` rows (cycling through ``rows`` if it has fewer), then the labels still
        due."""
        report = SimulationReport()
        pending: list[PendingLabel] = []
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            for i in range(count):
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                self._pace(started, i)
                request_id = self._send(client, i % len(self.rows), report)
                label = self._label(i)
                if request_id is not None and label is not None:
                    pending.append((time.monotonic() + self.label_delay, request_id, label))
                pending = self._send_due_labels(client, pending, report, flush=False)
            self._send_due_labels(client, pending, report, flush=True)
            report.unlogged = self._wait_until_logged(client)
        report.seconds = time.monotonic() - started
        return report

    @staticmethod
    def json_row(row: pd.Series) -> dict[str, object]:
        """One row as the ``features`` of a /predict body (NaN as null, NumPy as Python)."""
        return {str(k): _json_value(v) for k, v in row.items()}

    def _wait_until_logged(self, client: httpx.Client, within: float = 30.0) -> int | None:
        """Wait until the predictor's log queue is empty; the rows still queued, or None.

        The predictor answers first and logs on a background thread, so a monitor run started
        the moment the last answer came back could miss the last rows and count too few (a
        small table's window then reads "not enough data"). ``/ready`` says how many answered
        rows wait to be logged. In the compose stack, empty means handed to the Redis stream;
        the worker then writes them to the database.
        """
        backoff = Backoff.fixed([0.02, 0.05, 0.1, 0.2], give_up_after=within)
        never = threading.Event()
        while True:
            try:
                body = client.get("/ready").json()
                depth = int(body["prediction_log"]["queue_depth"])
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                return None  # an older or other deployment: nothing to wait on
            if depth == 0 or backoff.expired():
                return depth
            backoff.wait(never)

    def _label(self, index: int) -> object:
        """Row ``index``'s label as JSON; None when there are no labels or this row has none."""
        if self.labels is None:
            return None
        label = self.labels.iloc[index % len(self.labels)]
        return None if label is None or pd.isna(label) else _json_value(label)

    def _pace(self, started: float, index: int) -> None:
        """Hold the rate: row ``index`` leaves no earlier than ``index / rate`` seconds in."""
        if self.rate > 0:
            wait = started + index / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _send(self, client: httpx.Client, index: int, report: SimulationReport) -> str | None:
        features = self.json_row(self.rows.iloc[index])
        report.sent += 1
        try:
            response = client.post("/predict", json={"features": features})
        except httpx.HTTPError as exc:
            report.failed += 1
            report.errors[type(exc).__name__] += 1
            return None
        if response.status_code != 200:
            report.failed += 1
            report.errors[str(response.status_code)] += 1
            return None
        body = response.json()
        report.answered += 1
        report.last_version = str(body["model"]["version"])
        report.versions[report.last_version] += 1
        return str(body["request_id"])

    def _send_due_labels(
        self,
        client: httpx.Client,
        pending: list[PendingLabel],
        report: SimulationReport,
        *,
        flush: bool,
    ) -> list[PendingLabel]:
        if flush and pending:
            wait = pending[-1][0] - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the last labels' delay, as real users would take
        now = time.monotonic()
        due = [p for p in pending if flush or p[0] <= now]
        if not due:
            return pending
        for start in range(0, len(due), 500):
            items = [
                {"request_id": rid, "label": label} for _, rid, label in due[start : start + 500]
            ]
            try:
                response = client.post("/feedback", json={"items": items})
                if response.status_code in (200, 404):
                    body = response.json()
                    report.labels_sent += body["accepted"]
                    report.labels_unknown += len(body["unknown"])
                else:
                    report.errors[f"feedback {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                report.errors[f"feedback {type(exc).__name__}"] += 1
        return [p for p in pending if not (flush or p[0] <= now)]
