"""The table in memory: :class:`Dataset`, made trainable on construction, and its fingerprint.

A dataset is a table with a target column, whatever built it (a file, a built-in table, a
retrain's labelled rows, a test). Making it trainable (dates and times as ISO text, durations as
seconds, mostly-numeric text as numbers) happens here, on construction, so every path into
training sees the same frame; reading files is :mod:`~mlops_stack.data.load`'s, deciding what
each column becomes is :mod:`~mlops_stack.data.columns`'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd
from pandas.api import types as ptypes

from mlops_stack.data.values import all_bool, is_text, show

BUILTIN_DATASET = "builtin:breast_cancer"
BUILTIN_REGRESSION_DATASET = "builtin:diabetes"
COERCE_NUMERIC_SHARE = 0.8
"""Text of which at least this share parses as numbers is coerced to numbers (the rest made
missing); from half up to this share it is refused as ambiguous, below half it is text."""


@dataclass(frozen=True)
class Dataset:
    """A loaded table, where it came from and which column is the label.

    The frame is made trainable on construction (:func:`_conform`): dates and times become ISO
    text, text that is mostly numbers becomes numbers; ``notes`` says per column what was done.
    """

    frame: pd.DataFrame
    target: str
    source: str
    notes: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        frame, notes = _conform(self.frame, self.target)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "notes", {**self.notes, **notes})

    @property
    def builtin(self) -> bool:
        return self.source in {BUILTIN_DATASET, BUILTIN_REGRESSION_DATASET}

    @property
    def features(self) -> pd.DataFrame:
        return self.frame.drop(columns=[self.target])

    @property
    def labels(self) -> pd.Series:
        return self.frame[self.target]


def _conform(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The frame with dates as ISO text and mostly-numeric text as numbers, and what changed.

    Copies the frame only when a column changes (a large numeric table is not copied).
    """
    notes: dict[str, str] = {}
    changed: dict[str, pd.Series] = {}
    for column in frame.columns:
        if column == target:
            continue
        series = frame[column]
        if ptypes.is_datetime64_any_dtype(series):
            changed[column] = _as_iso_text(series)
        elif ptypes.is_timedelta64_dtype(series):
            changed[column] = series.dt.total_seconds()
            notes[str(column)] = "durations: as seconds"
        elif is_text(series) and not isinstance(series.dtype, pd.CategoricalDtype):
            numbers, note = _numbers_in_text(series)
            if numbers is not None:
                changed[column] = numbers
                if note:
                    notes[str(column)] = note
            elif series.isna().all():
                changed[column] = series.astype(float)  # an empty text column: no type at all
            elif _mixed_types(series):
                changed[column] = series.where(series.isna(), series.astype(str))
    if not changed:
        return frame, notes
    frame = frame.copy()
    for column, series in changed.items():
        frame[column] = series
    return frame, notes


def _as_iso_text(series: pd.Series) -> pd.Series:
    """Dates as ISO text: what a client sends in JSON, and what any signature takes."""
    return series.map(lambda v: v.isoformat() if pd.notna(v) else None).astype(object)


def _mixed_types(series: pd.Series) -> bool:
    """Objects of several Python types (numbers and text from code or Parquet): one-hot
    encoding needs them all text."""
    kinds = series.dropna().map(type)
    return bool(kinds.nunique() > 1 and not kinds.map(lambda k: issubclass(k, str)).all())


def _numbers_in_text(series: pd.Series) -> tuple[pd.Series | None, str]:
    """Numbers for a text column that is (at least :data:`COERCE_NUMERIC_SHARE`) numbers.

    Returns None when it is text; the note counts the values made missing.
    """
    values = series.dropna()
    if values.empty or all_bool(values):
        return None, ""
    numbers = pd.to_numeric(values, errors="coerce")
    share = float(numbers.notna().mean())
    if share < COERCE_NUMERIC_SHARE:
        return None, ""
    bad = values[numbers.isna()]
    note = ""
    if len(bad):
        examples = ", ".join(show(v) for v in bad.unique()[:3])
        note = (
            f"mostly numbers: {len(bad)} value(s) that are not ({examples}) made missing "
            "and imputed"
        )
    return pd.to_numeric(series, errors="coerce"), note


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable SHA-256 of a table's columns, dtypes and values (row order included)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
