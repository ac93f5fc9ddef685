"""The per-column decisions: what training does with every column of a table, and why.

Before anything reaches scikit-learn, every column but the target is decided once
(:func:`plan_columns`) and the decision is saved with the model in the schema's ``columns``,
which ``mlops train`` prints:

- numbers are numeric features; text, categories and booleans are categorical (one-hot);
- a categorical with more distinct values than ``MLOPS_MAX_CATEGORIES`` is kept with a bound
  (``bounded-categorical``: its most frequent values one-hot, the rest grouped), so training
  time and memory stay bounded whatever the column holds;
- text that is mostly numbers (``12``, ``7.5``, ``unknown``) becomes numbers, the rest missing,
  and the count is reported (on load: :mod:`~mlops_stack.data.dataset`);
- dropped, each with its reason: empty and constant columns (no signal), ID-like columns (a
  different value in every row: a key, not a feature), free text (sentences need their own
  encoding: TF-IDF or embeddings), and dates or times (a date as such does not generalise to
  the future; derive the parts you need, such as month or weekday, as columns of their own).

A dropped column stays an optional input of the logged model (the pipeline ignores it), so a
client may send the user's full row. Apart from the schema and validation, which both read
these decisions: the rules are the bulk of the package and change on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel

from mlops_stack.data.dataset import Dataset
from mlops_stack.data.values import all_bool, is_text, show, value_range

DEFAULT_MAX_CATEGORIES = 50
"""Distinct values a categorical one-hot encodes in full (``MLOPS_MAX_CATEGORIES``)."""
MIN_CATEGORY_ROWS = 5
"""A value of a bounded categorical seen in fewer training rows is grouped as infrequent."""
ID_UNIQUE_SHARE = 0.95
"""Text with at least this share of distinct values among the present ones is ID-like."""
FREE_TEXT_UNIQUE_SHARE = 0.5
FREE_TEXT_MIN_WORDS = 3
"""Text whose typical value has this many words and that is mostly distinct is free text."""
DATE_SHARE = 0.95
"""Text of which this share of a sample parses as dates is a date column."""
_SAMPLE = 200
_ID_NAME = re.compile(
    r"(^|[_\W])(id|uuid|guid|key|index)$|^(id|uuid|guid|key|index)([_\W]|$)", re.I
)


class ColumnAction(StrEnum):
    """What training does with a column (``ColumnTreatment.action``)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOUNDED_CATEGORICAL = "bounded-categorical"
    DROPPED = "dropped"


class ColumnTreatment(BaseModel):
    """What training did with one column of the table, in words ``mlops train`` prints.

    ``action`` is ``numeric``, ``categorical`` (one-hot), ``bounded-categorical`` (one-hot of
    the most frequent values, the rest grouped) or ``dropped``; ``reason`` says why, and is
    empty for a column kept as it was (a plain number or a category of a few values).
    """

    name: str
    action: str
    reason: str = ""

    @property
    def plain(self) -> bool:
        """Kept as it came: nothing worth telling the user."""
        return not self.reason

    def __str__(self) -> str:
        return f"{self.name}: {self.action}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ColumnPlan:
    """The decision for one column: its treatment, and a problem when it cannot be trained on."""

    treatment: ColumnTreatment
    problem: str | None = None

    @property
    def kept(self) -> bool:
        return self.problem is None and self.treatment.action != ColumnAction.DROPPED


def plan_columns(
    dataset: Dataset, *, max_categories: int = DEFAULT_MAX_CATEGORIES
) -> list[ColumnPlan]:
    """Decide every feature column of the table, in its order (see the module docstring)."""
    return [
        _plan(str(column), dataset.frame[column], max_categories, dataset.notes)
        for column in dataset.frame.columns
        if column != dataset.target
    ]


def _plan(name: str, series: pd.Series, max_categories: int, notes: dict[str, str]) -> ColumnPlan:
    numeric = ptypes.is_numeric_dtype(series) and not ptypes.is_complex_dtype(series)
    if numeric and not ptypes.is_bool_dtype(series):  # no copy: a large table is numbers
        return _plan_numeric(name, series, notes.get(name, ""))
    values = series.dropna()
    if values.empty:
        return _drop(name, "empty: every value is missing")
    if ptypes.is_bool_dtype(series) or (ptypes.is_object_dtype(series) and all_bool(values)):
        if values.nunique() < 2:
            return _drop(name, f"constant: every value is {show(values.iloc[0])}")
        return _keep(name, ColumnAction.CATEGORICAL, "true/false: encoded as two categories")
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _plan_text(name, values.astype(str), max_categories)
    if not is_text(series):
        return _drop(name, f"unsupported type {series.dtype}: use numbers, text or categories")
    mixed = _mixed_numbers(values)
    if mixed:
        return ColumnPlan(_treatment(name, ColumnAction.DROPPED, mixed), problem=mixed)
    return _plan_text(name, values.astype(str), max_categories)


def _treatment(name: str, action: ColumnAction, reason: str = "") -> ColumnTreatment:
    return ColumnTreatment(name=name, action=action, reason=reason)


def _keep(name: str, action: ColumnAction, reason: str = "") -> ColumnPlan:
    return ColumnPlan(_treatment(name, action, reason))


def _drop(name: str, reason: str) -> ColumnPlan:
    return ColumnPlan(_treatment(name, ColumnAction.DROPPED, reason))


def _plan_numeric(name: str, series: pd.Series, note: str) -> ColumnPlan:
    low, high = value_range(series)
    if np.isnan(low):
        return _drop(name, "empty: every value is missing")
    if np.isinf(low) or np.isinf(high):
        infinite = "column holds infinite values"
        return ColumnPlan(_treatment(name, ColumnAction.DROPPED, infinite), problem=infinite)
    if low == high:
        shown = int(low) if ptypes.is_integer_dtype(series) else low
        return _drop(name, f"constant: every value is {show(shown)}")
    if _numeric_id(name, series, low, high):
        return _drop(
            name,
            "ID-like: a different whole number in every row (a key: it identifies the row, "
            "it does not describe it)",
        )
    return _keep(name, ColumnAction.NUMERIC, note)


def _numeric_id(name: str, series: pd.Series, low: float, high: float) -> bool:
    """Distinct whole numbers named like a key, or a row number (a run of consecutive ones).

    Judged on the present values: a retrain's table adds rows logged without the ID. Cheap
    checks first: a large numeric table must not pay a hash of every column.
    """
    present = int(series.count())
    named = bool(_ID_NAME.search(name))
    run = high - low == present - 1
    if present < 20 or not (named or run):
        return False
    values = series.dropna()
    whole = ptypes.is_integer_dtype(series) or bool(np.all(np.mod(values, 1) == 0))
    return whole and bool(values.is_unique)


def _mixed_numbers(values: pd.Series) -> str | None:
    """A problem for text that is half to mostly numbers (from COERCE_NUMERIC_SHARE up it
    was made numbers on load): ambiguous, the user decides."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().mean() < 0.5:
        return None
    bad = values[numbers.isna()]
    examples = ", ".join(show(v) for v in bad.unique()[:3])
    return (
        f"wrong type: mostly numbers but {len(bad)} of {len(values)} value(s) are not "
        f"({examples}); fix or blank those values"
    )


def _plan_text(name: str, text: pd.Series, max_categories: int) -> ColumnPlan:
    distinct = int(text.nunique())
    if distinct < 2:
        return _drop(name, f"constant: every value is {show(text.iloc[0])}")
    if _dates(text):
        return _drop(
            name,
            "dates/times: a date as such never recurs in future rows; derive the parts you "
            "need (year, month, weekday, hour) as columns of their own",
        )
    share = distinct / len(text)
    if share >= FREE_TEXT_UNIQUE_SHARE and _words(text) >= FREE_TEXT_MIN_WORDS:
        return _drop(
            name,
            f"free text: {distinct} distinct values of several words; text features need "
            "their own encoding (TF-IDF, embeddings), not one-hot",
        )
    if share >= ID_UNIQUE_SHARE and len(text) >= 20:
        return _drop(
            name,
            f"ID-like: {distinct} distinct values in {len(text)} rows (a key: it identifies "
            "the row, it does not describe it)",
        )
    if distinct > max_categories:
        return _keep(
            name,
            ColumnAction.BOUNDED_CATEGORICAL,
            f"{distinct} distinct values: one-hot of at most the {max_categories - 1} most "
            f"frequent (each in {MIN_CATEGORY_ROWS}+ rows), the rest and unseen values as one "
            f"(MLOPS_MAX_CATEGORIES={max_categories})",
        )
    return _keep(name, ColumnAction.CATEGORICAL)


def _sample(text: pd.Series) -> pd.Series:
    """Up to :data:`_SAMPLE` values spread over the column (deterministic)."""
    step = max(1, len(text) // _SAMPLE)
    return text.iloc[::step].head(_SAMPLE)


def _dates(text: pd.Series) -> bool:
    """Text of which nearly every sampled value is a date or time with digits in it."""
    sample = _sample(text)
    if not sample.str.contains(r"\d").mean() >= DATE_SHARE:
        return False
    for fmt in ("ISO8601", "mixed"):
        try:
            parsed = pd.to_datetime(sample, errors="coerce", format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
        if parsed.notna().mean() >= DATE_SHARE:
            return True
    return False


def _words(text: pd.Series) -> float:
    """Median number of words of the sampled values."""
    return float(_sample(text).str.split().str.len().median())
