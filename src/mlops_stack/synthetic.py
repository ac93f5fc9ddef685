"""Fresh rows from a table's own distribution, with covariate shifts and concept shifts.

The simulator, the demo and ``benchmarks/drift.py`` need more rows than a table has, and rows
that are never repeated: a window that cycles through the same 114 held-out rows has far fewer
distinct values than real traffic, and the drift tests rightly read that as a changed
distribution (the false alarms of issue 13). :class:`RowGenerator` draws from a *smoothed
bootstrap* of the whole table: pick a row at random, add a little Gaussian noise to each number
(``jitter`` of the column's standard deviation), shrink it back so the column's variance is
kept, and clip it into the column's observed range. Categories, missing values and the label
come from the picked row, so each fresh row keeps its real label and the feature relationships
the table has. No row is ever sent twice, and the generator is one ``fit`` away for any table.

A **covariate shift** of feature X by ``d`` standard deviations is a move of the population, not
an edit of one column: every numeric Y moves by ``d * corr(X, Y) * std(Y)``, the change of Y's
mean that a move of X's implies under a linear (Gaussian) model of the table. So X moves, the
features correlated with it move in proportion, and nothing else moves. A monitor that then
flags X and its correlates is right; one that flags uncorrelated features is crying wolf.

A **concept shift** (:class:`ConceptShift`) changes the label, not the features: the threshold
of one feature that best separates the classes moves by ``d`` standard deviations, and the rows
between the old and the new threshold change class. It is a plausible mechanism (a diagnostic
criterion or a credit policy that moved), it leaves every row outside the band as it was, and a
model retrained on the new labels can learn it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

DEFAULT_JITTER = 0.1
"""Noise added to each number, in the column's standard deviations (before the shrink)."""

DISCRETE_SHARE = 0.2
"""A numeric column with at most this share of the table's rows as distinct values (or at most
20) is discrete: a count, a code, a flag, a rounded measure. Its values are copied from the
source row, never jittered: jitter would invent values it never takes (a 0/1 flag at 0.37), a
change of distribution the drift tests rightly notice (diabetes' ``sex``, ``s4``, ``s6``)."""


def discrete_columns(frame: pd.DataFrame, numeric: tuple[str, ...]) -> tuple[str, ...]:
    """The numeric columns of ``frame`` whose values are few and repeated (see DISCRETE_SHARE)."""
    most = max(20, int(DISCRETE_SHARE * len(frame)))
    return tuple(c for c in numeric if frame[c].nunique() <= most)


def _is_number(column: pd.Series) -> bool:
    return bool(ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column))


@dataclass(frozen=True)
class RowGenerator:
    """A smoothed bootstrap of one table (see the module docstring); :meth:`fit` builds it."""

    table: pd.DataFrame
    target: str | None
    numeric: tuple[str, ...]  # columns that are numbers (shiftable)
    discrete: tuple[str, ...]  # numeric columns copied from the source row, not jittered
    means: pd.Series
    stds: pd.Series
    lows: pd.Series
    highs: pd.Series
    correlations: pd.DataFrame  # Pearson, numeric x numeric, NaN (constant columns) as 0
    jitter: float = DEFAULT_JITTER

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, target: str | None = None, *, jitter: float = DEFAULT_JITTER
    ) -> RowGenerator:
        """Learn what sampling needs from ``frame``; ``target`` is carried from the source row,
        never jittered or shifted."""
        if frame.empty:
            raise ValueError("cannot generate rows from an empty table")
        if target is not None and target not in frame.columns:
            raise ValueError(f"no column {target!r} (the target) in the table")
        if jitter < 0:
            raise ValueError(f"jitter must be at least 0, not {jitter}")
        table = frame.reset_index(drop=True)
        numeric = tuple(c for c in table.columns if c != target and _is_number(table[c]))
        values = table[list(numeric)].astype(float)
        return cls(
            table=table,
            target=target,
            numeric=numeric,
            discrete=discrete_columns(table, numeric),
            means=values.mean(),
            stds=values.std().fillna(0.0),
            lows=values.min(),
            highs=values.max(),
            correlations=values.corr().fillna(0.0),
            jitter=jitter,
        )

    @property
    def features(self) -> list[str]:
        """Every column but the target, in the table's order."""
        return [c for c in self.table.columns if c != self.target]

    def correlation(self, feature: str) -> pd.Series:
        """Pearson correlation of every numeric feature with ``feature`` (itself: 1)."""
        self._check_numeric(feature)
        return self.correlations[feature].copy()

    def movement(self, shifts: Mapping[str, float]) -> pd.Series:
        """How far each numeric feature moves, in its own standard deviations, under ``shifts``
        ({feature: stds}); the sum over shifts of ``stds * corr(feature, Y)``."""
        moved = pd.Series(0.0, index=list(self.numeric))
        for feature, stds in shifts.items():
            moved = moved + stds * self.correlation(feature)
        return moved

    def sample(
        self, n: int, *, seed: int, shifts: Mapping[str, float] | None = None
    ) -> pd.DataFrame:
        """``n`` fresh rows with the table's columns (the target too, if it has one).

        ``shifts`` ({feature: stds}) moves the population as the module docstring says.
        """
        return self.sample_with_sources(n, seed=seed, shifts=shifts)[0]

    def sample_with_sources(
        self, n: int, *, seed: int, shifts: Mapping[str, float] | None = None
    ) -> tuple[pd.DataFrame, npt.NDArray[np.int64]]:
        """:meth:`sample`, and the position in the fitted table of each fresh row's source row
        (so a caller can tell, e.g., which rows were drawn from held-out rows)."""
        if n < 0:
            raise ValueError(f"cannot draw {n} rows")
        shifts = dict(shifts or {})
        for feature in shifts:
            self._check_numeric(feature)
        rng = np.random.default_rng(seed)
        picked = rng.integers(0, len(self.table), size=n)
        rows = self.table.iloc[picked].reset_index(drop=True)
        moved = self.movement(shifts) if shifts else None
        for column in self.numeric:
            rows[column] = self._fresh(rows[column], column, rng, moved)
        return rows, picked

    def _fresh(
        self, source: pd.Series, column: str, rng: np.random.Generator, moved: pd.Series | None
    ) -> pd.Series:
        """Jitter (not a discrete column), shrink to the column's variance, clip into its range,
        then shift."""
        mean, std = float(self.means[column]), float(self.stds[column])
        values = source.astype(float).to_numpy()
        if std > 0 and self.jitter > 0 and column not in self.discrete:
            noisy = values + rng.normal(0.0, self.jitter * std, size=len(values))
            values = mean + (noisy - mean) / np.sqrt(1.0 + self.jitter**2)
            values = np.clip(values, float(self.lows[column]), float(self.highs[column]))
        if moved is not None:
            values = values + float(moved[column]) * std
        out = pd.Series(values, index=source.index, name=column)
        original = self.table[column]
        if ptypes.is_integer_dtype(original) and not out.isna().any():
            return out.round().astype(original.dtype)
        return out

    def _check_numeric(self, feature: str) -> None:
        if feature not in self.numeric:
            kind = "the target" if feature == self.target else "not a numeric feature"
            if feature not in self.table.columns:
                kind = "not a column of the table"
            raise ValueError(f"cannot shift {feature!r}: {kind}")


@dataclass(frozen=True)
class ConceptShift:
    """The class boundary on one feature moves by ``stds`` standard deviations.

    ``threshold`` is the cut on ``feature`` that best separates ``high_class`` (the class more
    common above it) from the others in the training table. After the shift the cut is
    ``threshold + stds * std``: with ``stds > 0`` the rows between the two cuts that were
    ``high_class`` become ``low_class``; with ``stds < 0`` the rows between the new and the old cut
    that were ``low_class`` become ``high_class``. Every other row keeps its label.
    For a regressor: the target gains ``stds * std(target) * z(feature)`` (the feature's effect
    on the target grew), where ``z`` is the feature standardised on the table.
    """

    feature: str
    stds: float
    threshold: float
    std: float
    mean: float
    high_class: object | None = None
    low_class: object | None = None
    target_std: float | None = None

    @classmethod
    def fit(cls, frame: pd.DataFrame, target: str, feature: str, stds: float) -> ConceptShift:
        """The best single cut of ``feature`` for ``target`` in ``frame`` (a decision stump on
        the two most common classes), or a regression target's scale."""
        if feature not in frame.columns or not _is_number(frame[feature]):
            raise ValueError(f"cannot move the threshold of {feature!r}: not a numeric feature")
        values = frame[feature].astype(float)
        mean, std = float(values.mean()), float(values.std())
        labels = frame[target]
        if _is_number(labels) and labels.nunique() > 20:
            return cls(feature, stds, mean, std, mean, target_std=float(labels.std()))
        top = labels.value_counts().index[:2]
        if len(top) < 2:
            raise ValueError(f"cannot move a class boundary: {target!r} has one class")
        threshold, high = _best_cut(values, labels, top[0], top[1])
        low = top[1] if high == top[0] else top[0]
        return cls(
            feature, stds, threshold, std, mean, high_class=_plain(high), low_class=_plain(low)
        )

    @property
    def new_threshold(self) -> float:
        return self.threshold + self.stds * self.std

    def describe(self) -> str:
        """The mechanism in one sentence, printed before the shifted traffic is sent."""
        if self.high_class is None:
            return (
                f"the effect of {self.feature!r} on the target grew: the target gains "
                f"{self.stds:+g} target standard deviations per standard deviation of it"
            )
        return (
            f"the boundary on {self.feature!r} moved from {self.threshold:.4g} to "
            f"{self.new_threshold:.4g} ({self.stds:+g} std): rows between the two cuts "
            f"change class ({self.high_class!r} above the boundary, {self.low_class!r} below)"
        )

    def relabel(self, rows: pd.DataFrame, labels: pd.Series) -> pd.Series:
        """``labels`` of ``rows`` under the moved concept (same index as ``labels``)."""
        x = rows[self.feature].astype(float).to_numpy()
        if self.high_class is None:
            z = (x - self.mean) / (self.std or 1.0)
            shifted = labels.astype(float).to_numpy() + self.stds * (self.target_std or 0.0) * z
            return pd.Series(shifted, index=labels.index, name=labels.name)
        lo, hi = sorted((self.threshold, self.new_threshold))
        band = (x > lo) & (x <= hi)
        out = labels.astype(object).copy()
        if self.stds > 0:
            change = band & (labels.to_numpy() == self.high_class)
            out[change] = self.low_class
        else:
            change = band & (labels.to_numpy() == self.low_class)
            out[change] = self.high_class
        return out.astype(labels.dtype) if _is_number(labels) else out


def _best_cut(
    values: pd.Series, labels: pd.Series, first: object, second: object
) -> tuple[float, object]:
    """The cut and the class above it that classify ``first`` vs ``second`` best by one
    threshold of ``values`` (rows of other classes and missing values left out)."""
    keep = labels.isin([first, second]) & values.notna()
    x = values[keep].to_numpy(dtype=float)
    y = (labels[keep] == first).to_numpy()
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    # rows at or below each cut position: first-class counts below, so errors of both rules
    first_below = np.cumsum(y)
    below = np.arange(1, len(x) + 1)
    first_total = int(y.sum())
    second_total = len(y) - first_total
    # rule A: first above the cut -> errors = first below + second above
    errors_a = first_below + (second_total - (below - first_below))
    # rule B: second above the cut -> errors = second below + first above
    errors_b = (below - first_below) + (first_total - first_below)
    distinct = np.r_[x[1:] != x[:-1], True]  # a cut only between distinct values
    errors_a = np.where(distinct, errors_a, np.iinfo(np.int64).max)
    errors_b = np.where(distinct, errors_b, np.iinfo(np.int64).max)
    a, b = int(errors_a.argmin()), int(errors_b.argmin())
    if errors_a[a] <= errors_b[b]:
        return _midpoint(x, a), first
    return _midpoint(x, b), second


def _plain(value: object) -> object:
    """A NumPy scalar as the Python value it holds (so it prints and serialises as itself)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _midpoint(x: np.ndarray, i: int) -> float:
    return float((x[i] + x[i + 1]) / 2) if i + 1 < len(x) else float(x[i])
