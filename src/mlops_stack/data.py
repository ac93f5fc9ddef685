"""Datasets: loading, the column decisions, the inferred feature schema, validation, a fingerprint.

A dataset is a table with a target column. Before anything reaches scikit-learn, every other
column is decided once (:func:`plan_columns`) and the decision is saved with the model in the
schema's ``columns``, which ``mlops train`` prints:

- numbers are numeric features; text, categories and booleans are categorical (one-hot);
- a categorical with more distinct values than ``MLOPS_MAX_CATEGORIES`` is kept with a bound
  (``bounded-categorical``: its most frequent values one-hot, the rest grouped), so training
  time and memory stay bounded whatever the column holds;
- text that is mostly numbers (``12``, ``7.5``, ``unknown``) becomes numbers, the rest missing,
  and the count is reported;
- dropped, each with its reason: empty and constant columns (no signal), ID-like columns (a
  different value in every row: a key, not a feature), free text (sentences need their own
  encoding: TF-IDF or embeddings), and dates or times (a date as such does not generalise to
  the future; derive the parts you need, such as month or weekday, as columns of their own).

A dropped column stays an optional input of the logged model (the pipeline ignores it), so a
client may send the user's full row. Validation reports every problem at once, each naming its
column, summarised to the first few, because a traceback from inside a Pipeline (or 214 lines
of rare classes) tells a user nothing.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, Field

from mlops_stack.names import Task

logger = logging.getLogger(__name__)

BUILTIN_DATASET = "builtin:breast_cancer"
BUILTIN_REGRESSION_DATASET = "builtin:diabetes"
MAX_STORED_CATEGORIES = 1000
MAX_CLASSIFICATION_CLASSES = 20
"""A numeric target of whole numbers with more distinct values than this is inferred as
regression (a count, a price in cents); with this many or fewer, as classes."""
DEFAULT_MAX_CATEGORIES = 50
"""Distinct values a categorical one-hot encodes in full (``MLOPS_MAX_CATEGORIES``)."""
MIN_CATEGORY_ROWS = 5
"""A value of a bounded categorical seen in fewer training rows is grouped as infrequent."""
SHOWN_PROBLEMS = 5
"""Problems a validation error's message lists; ``problems`` keeps them all."""
COERCE_NUMERIC_SHARE = 0.8
"""Text of which at least this share parses as numbers is coerced to numbers (the rest made
missing); from half up to this share it is refused as ambiguous, below half it is text."""
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
_HEAD_BYTES = 64 * 1024


class ColumnAction(StrEnum):
    """What training does with a column (``ColumnTreatment.action``)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOUNDED_CATEGORICAL = "bounded-categorical"
    DROPPED = "dropped"


class FeatureSpec(BaseModel):
    """What training saw of one feature column.

    ``max_categories`` is set for a bounded categorical: how many one-hot columns it gets.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str
    missing_in_training: int = 0
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_categories: int | None = None


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


class DatasetSchema(BaseModel):
    """The feature schema saved next to a model (``schema.json``).

    ``features`` are the columns the model uses; ``columns`` says what was done with every
    column of the table (kept, encoded with a bound, or dropped and why). ``classes`` is empty
    for a regression model. Schemas saved before tasks existed load as classification.
    """

    target: str
    task: Task = Task.CLASSIFICATION
    classes: list[str] = Field(default_factory=list)
    features: list[FeatureSpec]
    columns: list[ColumnTreatment] = Field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def dropped(self) -> list[str]:
        """Columns of the table the model ignores (optional inputs of its signature)."""
        return [c.name for c in self.columns if c.action == ColumnAction.DROPPED]


@dataclass(frozen=True)
class Problem:
    """One validation finding; ``column`` is None when it concerns the whole table."""

    column: str | None
    message: str

    def __str__(self) -> str:
        return f"column '{self.column}': {self.message}" if self.column else self.message


class DataValidationError(ValueError):
    """The dataset cannot be trained on; ``problems`` lists every reason, each with its column.

    The message shows the count and the first :data:`SHOWN_PROBLEMS`: a person reads it.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"  - {p}" for p in problems[:SHOWN_PROBLEMS]]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more")
        body = "\n".join(lines)
        super().__init__(f"dataset failed validation ({len(problems)} problem(s)):\n{body}")


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


# --- loading ---------------------------------------------------------------------------------


def load_dataset(path: Path | str | None, target: str) -> Dataset:
    """Load a built-in table (``path`` None or ``builtin:NAME``) or a CSV/TSV/Parquet file."""
    if path is None or str(path) == BUILTIN_DATASET:
        return _load_builtin()
    if str(path) == BUILTIN_REGRESSION_DATASET:
        return _load_builtin_regression()
    path = Path(path)
    if not path.is_file():
        raise DataValidationError([Problem(None, f"dataset file not found: {path}")])
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".txt", ".tsv", ".parquet", ".pq"}:
        raise DataValidationError(
            [Problem(None, f"unsupported file type '{suffix}': use .csv or .parquet")]
        )
    try:
        frame = pd.read_parquet(path) if suffix in {".parquet", ".pq"} else read_csv(path)
    except DataValidationError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise DataValidationError([Problem(None, f"cannot read {path}: {exc}")]) from exc
    return Dataset(frame=frame, target=target, source=str(path))


def read_csv(path: Path) -> pd.DataFrame:
    """Read a delimited text file, finding its encoding and delimiter from its head.

    Spreadsheets export semicolon-separated files (with decimal commas) or tab-separated
    ones, and Windows tools Latin-1/cp1252 text: each is read as meant, and a log line says
    how, rather than becoming one wide column or a decode error.
    """
    with path.open("rb") as file:
        head = file.read(_HEAD_BYTES)
    encoding = _encoding(head, path)
    text = head.decode(encoding, errors="replace")
    if len(head) == _HEAD_BYTES:  # cut at the last whole line
        text = text[: text.rfind("\n") + 1] or text
    sep, decimal = _delimiter(text)
    if sep != ",":
        extra = " with decimal commas" if decimal == "," else ""
        logger.info("%s: reading as %s-delimited%s (detected)", path.name, _shown(sep), extra)
    try:
        return _read_delimited(path, sep, decimal, encoding)
    except UnicodeDecodeError:
        if not encoding.startswith("utf-8"):
            raise
    # UTF-8 in the head, not further on: a Windows export with a late accented value
    logger.warning(
        "%s: not UTF-8 after its first %d KiB; reading it as cp1252 (detected)",
        path.name,
        _HEAD_BYTES // 1024,
    )
    try:
        return _read_delimited(path, sep, decimal, "cp1252")
    except UnicodeDecodeError:
        return _read_delimited(path, sep, decimal, "latin-1")


def _read_delimited(path: Path, sep: str, decimal: str, encoding: str) -> pd.DataFrame:
    """The table as pandas reads it, every number parsed to the float its text names.

    pandas' default float parser is off by one unit in the last place for many values (4,116
    of the diabetes table's 4,862), while a client reading the same file (Python's ``float``,
    JSON) gets the exact value: the training minimum and maximum and the few values of a
    low-cardinality column would then differ from the very rows clients send, and clean
    traffic would read as out of range or drifted. ``round_trip`` costs ~2.5x the parse time
    (about 20 s more for 1.5 million rows x 20 columns).
    """
    try:
        return pd.read_csv(
            path, sep=sep, decimal=decimal, encoding=encoding, float_precision="round_trip"
        )
    except pd.errors.ParserError as exc:
        raise DataValidationError(
            [
                Problem(
                    None,
                    f"cannot read {path} as {_shown(sep)}-delimited {encoding} text: {exc}. "
                    "Check the delimiter (',' ';' or tab) and the quoting",
                )
            ]
        ) from exc


def _shown(sep: str) -> str:
    return "tab" if sep == "\t" else repr(sep)


def _encoding(head: bytes, path: Path) -> str:
    """UTF-8 (with or without a BOM), UTF-16 by its BOM, else cp1252 or Latin-1 (logged)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the head's end
            return "utf-8"
    for fallback in ("cp1252", "latin-1"):
        try:
            head.decode(fallback)
        except UnicodeDecodeError:
            continue
        logger.warning("%s: not UTF-8; reading it as %s (detected)", path.name, fallback)
        return fallback
    return "latin-1"  # decodes any bytes; unreachable in practice


def _delimiter(text: str) -> tuple[str, str]:
    """The delimiter of a CSV head (``,``, ``;``, tab or ``|``) and its decimal mark.

    A header without a comma but with another candidate is sniffed; a comma header stays a
    comma file, so a quoted free-text field holding semicolons cannot mislead the sniffer.
    """
    header = text.split("\n", 1)[0]
    if "," in header or not any(c in header for c in ";\t|"):
        return ",", "."
    try:
        sep = csv.Sniffer().sniff(text, delimiters=";\t|").delimiter
    except csv.Error:
        sep = max(";\t|", key=header.count)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    decimal = "," if sep == ";" and re.search(r"(^|;)-?\d+,\d+(;|\r?$)", body, re.M) else "."
    return sep, decimal


def _load_builtin() -> Dataset:
    """scikit-learn's breast cancer table: 569 rows, 30 numeric features, shipped offline."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return Dataset(frame=frame, target="target", source=BUILTIN_DATASET)


def _load_builtin_regression() -> Dataset:
    """scikit-learn's diabetes table: 442 rows, 10 numeric features, a numeric target."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    return Dataset(frame=frame, target="target", source=BUILTIN_REGRESSION_DATASET)


# --- the task --------------------------------------------------------------------------------


def infer_task(labels: pd.Series, requested: Task | str | None = None) -> Task:
    """The task a target column asks for, unless ``requested`` (``MLOPS_TASK``) says.

    Numbers with a fraction, or whole numbers with more than ``MAX_CLASSIFICATION_CLASSES``
    distinct values, are a regression target; text, booleans, categories and a few distinct
    whole numbers are classes.
    """
    if requested is not None and str(requested) != "auto":
        return Task(requested)
    values = labels.dropna()
    if ptypes.is_bool_dtype(values) or not ptypes.is_numeric_dtype(values):
        return Task.CLASSIFICATION
    whole = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if whole and values.nunique() <= MAX_CLASSIFICATION_CLASSES:
        return Task.CLASSIFICATION
    return Task.REGRESSION


# --- making a frame trainable ----------------------------------------------------------------


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
        elif _is_text(series) and not isinstance(series.dtype, pd.CategoricalDtype):
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
    if values.empty or _all_bool(values):
        return None, ""
    numbers = pd.to_numeric(values, errors="coerce")
    share = float(numbers.notna().mean())
    if share < COERCE_NUMERIC_SHARE:
        return None, ""
    bad = values[numbers.isna()]
    note = ""
    if len(bad):
        examples = ", ".join(_show(v) for v in bad.unique()[:3])
        note = (
            f"mostly numbers: {len(bad)} value(s) that are not ({examples}) made missing "
            "and imputed"
        )
    return pd.to_numeric(series, errors="coerce"), note


# --- deciding each column --------------------------------------------------------------------


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
    if ptypes.is_bool_dtype(series) or (ptypes.is_object_dtype(series) and _all_bool(values)):
        if values.nunique() < 2:
            return _drop(name, f"constant: every value is {_show(values.iloc[0])}")
        return _keep(name, ColumnAction.CATEGORICAL, "true/false: encoded as two categories")
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _plan_text(name, values.astype(str), max_categories)
    if not _is_text(series):
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


def _all_bool(values: pd.Series) -> bool:
    """Python booleans only (a CSV column of True/False with blanks reads as objects)."""
    head = values.iloc[:100]
    is_bool = lambda v: isinstance(v, bool | np.bool_)  # noqa: E731
    return bool(head.map(is_bool).all() and values.map(is_bool).all())


def _plan_numeric(name: str, series: pd.Series, note: str) -> ColumnPlan:
    low, high = _range(series)
    if np.isnan(low):
        return _drop(name, "empty: every value is missing")
    if np.isinf(low) or np.isinf(high):
        infinite = "column holds infinite values"
        return ColumnPlan(_treatment(name, ColumnAction.DROPPED, infinite), problem=infinite)
    if low == high:
        shown = int(low) if ptypes.is_integer_dtype(series) else low
        return _drop(name, f"constant: every value is {_show(shown)}")
    if _numeric_id(name, series, low, high):
        return _drop(
            name,
            "ID-like: a different whole number in every row (a key: it identifies the row, "
            "it does not describe it)",
        )
    return _keep(name, ColumnAction.NUMERIC, note)


def _range(series: pd.Series) -> tuple[float, float]:
    """Smallest and largest value, missing ones skipped (NaN when all are missing), in one
    pass each over the array: pandas' own min/max build a mask first."""
    values = (
        series.to_numpy()
        if series.dtype == np.float64
        else series.to_numpy(dtype=float, na_value=np.nan)
    )
    return float(np.fmin.reduce(values)), float(np.fmax.reduce(values))


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
    examples = ", ".join(_show(v) for v in bad.unique()[:3])
    return (
        f"wrong type: mostly numbers but {len(bad)} of {len(values)} value(s) are not "
        f"({examples}); fix or blank those values"
    )


def _plan_text(name: str, text: pd.Series, max_categories: int) -> ColumnPlan:
    distinct = int(text.nunique())
    if distinct < 2:
        return _drop(name, f"constant: every value is {_show(text.iloc[0])}")
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


def _is_text(series: pd.Series) -> bool:
    return bool(ptypes.is_object_dtype(series) or ptypes.is_string_dtype(series))


def _show(value: object) -> str:
    """A value as a person reads it: ``7`` and ``'same'``, never ``np.int64(7)``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


# --- validation ------------------------------------------------------------------------------


def validate_dataset(dataset: Dataset, *, task: Task, min_rows: int, min_class_rows: int) -> None:
    """Raise :class:`DataValidationError` listing every reason the table cannot be trained on.

    Columns that are merely unhelpful (empty, constant, IDs, free text, dates) are dropped by
    :func:`plan_columns`, not refused; only a table with no usable feature left is.
    """
    frame, target = dataset.frame, dataset.target
    if target not in frame.columns:
        raise DataValidationError([Problem(target, _missing_target(frame))])
    problems: list[Problem] = []
    if len(frame) < min_rows:
        problems.append(Problem(None, f"only {len(frame)} rows; at least {min_rows} are needed"))
    problems += _target_problems(frame[target], Task(task), min_class_rows)
    plans = plan_columns(dataset)
    problems += [Problem(p.treatment.name, p.problem) for p in plans if p.problem]
    if not plans:
        problems.append(Problem(None, "no feature columns besides the target"))
    elif not any(p.kept or p.problem for p in plans):
        dropped = "; ".join(str(p.treatment) for p in plans[:SHOWN_PROBLEMS])
        problems.append(
            Problem(None, f"no usable feature column: every one is dropped ({dropped})")
        )
    if problems:
        raise DataValidationError(problems)


def _missing_target(frame: pd.DataFrame) -> str:
    available = ", ".join(map(str, frame.columns[:20]))
    message = f"target column is missing; the table has: {available}"
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for sep in ";\t|":
            if sep in header:
                return f"{message} (one column: the file looks {_shown(sep)}-delimited)"
    return message


def _target_problems(labels: pd.Series, task: Task, min_class_rows: int) -> list[Problem]:
    name = str(labels.name)
    missing = int(labels.isna().sum())
    if missing:
        return [Problem(name, f"target has {missing} missing value(s); label or drop those rows")]
    if task is Task.REGRESSION:
        return _regression_target_problems(name, labels)
    counts = labels.value_counts()
    if len(counts) < 2:
        return [Problem(name, f"target has {len(counts)} class(es); at least 2 are needed")]
    rare = counts[counts < min_class_rows]
    if rare.empty:
        return []
    if infer_task(labels) is Task.REGRESSION:
        return [
            Problem(
                name,
                f"target has {len(counts)} distinct numeric values, {len(rare)} of them in "
                f"fewer than {min_class_rows} rows: it looks like a regression target; train "
                "with --task regression (MLOPS_TASK=regression)",
            )
        ]
    return [
        Problem(name, f"class {_show(label)} has {n} row(s); each class needs {min_class_rows}")
        for label, n in rare.items()
    ]


def _regression_target_problems(name: str, labels: pd.Series) -> list[Problem]:
    if ptypes.is_bool_dtype(labels) or not ptypes.is_numeric_dtype(labels):
        examples = ", ".join(_show(v) for v in labels.unique()[:3])
        return [
            Problem(
                name,
                f"regression needs a numeric target, this one holds text ({examples}); train "
                "with --task classification (MLOPS_TASK=classification) to predict classes",
            )
        ]
    if not np.isfinite(labels.to_numpy(dtype=float)).all():
        return [Problem(name, "target holds infinite values")]
    if labels.nunique() < 2:
        return [Problem(name, f"target is constant ({_show(labels.iloc[0])}); nothing to learn")]
    return []


# --- the schema ------------------------------------------------------------------------------


def infer_schema(
    dataset: Dataset,
    task: Task | str | None = None,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> DatasetSchema:
    """Describe each kept feature as training saw it, and what was done with every column.

    ``task`` None infers it from the target (:func:`infer_task`).
    """
    plans = plan_columns(dataset, max_categories=max_categories)
    specs = [
        _feature_spec(dataset.frame[p.treatment.name], p.treatment, max_categories)
        for p in plans
        if p.kept
    ]
    resolved = infer_task(dataset.labels, task)
    classes = sorted(map(str, dataset.labels.unique())) if resolved is Task.CLASSIFICATION else []
    return DatasetSchema(
        target=dataset.target,
        task=resolved,
        classes=classes,
        features=specs,
        columns=[p.treatment for p in plans],
    )


def _feature_spec(
    series: pd.Series, treatment: ColumnTreatment, max_categories: int
) -> FeatureSpec:
    numeric = treatment.action == ColumnAction.NUMERIC
    spec = FeatureSpec(
        name=treatment.name,
        kind="numeric" if numeric else "categorical",
        dtype=str(series.dtype),
        missing_in_training=int(series.isna().sum()),
    )
    if numeric:
        spec.min, spec.max = _range(series)
    else:
        # the most frequent first when there are more than can be stored
        frequent = series.dropna().astype(str).value_counts().index[:MAX_STORED_CATEGORIES]
        spec.categories = sorted(frequent)
    if treatment.action == ColumnAction.BOUNDED_CATEGORICAL:
        spec.max_categories = max_categories
    return spec


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable SHA-256 of a table's columns, dtypes and values (row order included)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
