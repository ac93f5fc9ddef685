"""Datasets: loading, the inferred feature schema, validation and a fingerprint.

A dataset is a table with a target column. The schema is inferred once from the training table
(numeric or categorical per column, ranges, categories, where values were missing) and saved with
the model, so that serving and monitoring check incoming rows against what training saw.
Validation runs before anything reaches scikit-learn and reports every problem at once, each
naming its column, because a traceback from inside a Pipeline tells a user nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, Field

from mlops_stack.names import Task

BUILTIN_DATASET = "builtin:breast_cancer"
BUILTIN_REGRESSION_DATASET = "builtin:diabetes"
MAX_STORED_CATEGORIES = 1000
MAX_CLASSIFICATION_CLASSES = 20
"""A numeric target of whole numbers with more distinct values than this is inferred as
regression (a count, a price in cents); with this many or fewer, as classes."""


class FeatureSpec(BaseModel):
    """What training saw of one feature column."""

    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str
    missing_in_training: int = 0
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


class ColumnTreatment(BaseModel):
    """What training did with one column of the table, in words ``mlops train`` prints.

    ``action`` is ``numeric``, ``categorical`` (one-hot), ``bounded-categorical`` (one-hot of
    the most frequent values, the rest grouped) or ``dropped``; ``reason`` says why.
    """

    name: str
    action: str
    reason: str = ""


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


@dataclass(frozen=True)
class Problem:
    """One validation finding; ``column`` is None when it concerns the whole table."""

    column: str | None
    message: str

    def __str__(self) -> str:
        return f"column '{self.column}': {self.message}" if self.column else self.message


class DataValidationError(ValueError):
    """The dataset cannot be trained on; ``problems`` lists every reason, each with its column."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"dataset failed validation ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Dataset:
    """A loaded table, where it came from and which column is the label."""

    frame: pd.DataFrame
    target: str
    source: str

    @property
    def builtin(self) -> bool:
        return self.source == BUILTIN_DATASET

    @property
    def features(self) -> pd.DataFrame:
        return self.frame.drop(columns=[self.target])

    @property
    def labels(self) -> pd.Series:
        return self.frame[self.target]


def load_dataset(path: Path | str | None, target: str) -> Dataset:
    """Load a built-in table (``path`` None or ``builtin:NAME``) or a CSV/Parquet file."""
    if path is None or str(path) == BUILTIN_DATASET:
        return _load_builtin()
    if str(path) == BUILTIN_REGRESSION_DATASET:
        return _load_builtin_regression()
    path = Path(path)
    if not path.is_file():
        raise DataValidationError([Problem(None, f"dataset file not found: {path}")])
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".txt"}:
            frame = pd.read_csv(path)
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        else:
            raise DataValidationError(
                [Problem(None, f"unsupported file type '{suffix}': use .csv or .parquet")]
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError([Problem(None, f"cannot read {path}: {exc}")]) from exc
    return Dataset(frame=_coerce_numeric_text(frame, target), target=target, source=str(path))


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


def _coerce_numeric_text(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Turn text columns whose every value is a number into numbers (e.g. quoted CSV fields)."""
    frame = frame.copy()
    for column in frame.columns:
        if column == target or not _is_text(frame[column]):
            continue
        values = frame[column].dropna()
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _is_text(series: pd.Series) -> bool:
    return bool(ptypes.is_object_dtype(series) or ptypes.is_string_dtype(series))


def _feature_kind(series: pd.Series) -> Literal["numeric", "categorical"] | None:
    """Numeric, categorical, or None for a type the pipelines cannot take (dates, durations)."""
    if ptypes.is_bool_dtype(series):
        return "categorical"
    if ptypes.is_numeric_dtype(series) and not ptypes.is_complex_dtype(series):
        return "numeric"
    if isinstance(series.dtype, pd.CategoricalDtype) or _is_text(series):
        return "categorical"
    return None


def validate_dataset(dataset: Dataset, *, min_rows: int, min_class_rows: int) -> None:
    """Raise :class:`DataValidationError` listing every reason the table cannot be trained on."""
    frame, target = dataset.frame, dataset.target
    problems: list[Problem] = []
    if target not in frame.columns:
        available = ", ".join(map(str, frame.columns[:20]))
        raise DataValidationError(
            [Problem(target, f"target column is missing; the table has: {available}")]
        )
    if len(frame) < min_rows:
        problems.append(Problem(None, f"only {len(frame)} rows; at least {min_rows} are needed"))
    problems += _target_problems(frame[target], min_class_rows)
    feature_columns = [c for c in frame.columns if c != target]
    if not feature_columns:
        problems.append(Problem(None, "no feature columns besides the target"))
    for column in feature_columns:
        problems += _feature_problems(str(column), frame[column])
    if problems:
        raise DataValidationError(problems)


def _target_problems(labels: pd.Series, min_class_rows: int) -> list[Problem]:
    name = str(labels.name)
    missing = int(labels.isna().sum())
    if missing:
        return [Problem(name, f"target has {missing} missing value(s); label or drop those rows")]
    if infer_task(labels) is Task.REGRESSION:  # stopgap: i12-data's task-aware checks replace it
        return []
    counts = labels.value_counts()
    if len(counts) < 2:
        return [Problem(name, f"target has {len(counts)} class(es); at least 2 are needed")]
    rare = counts[counts < min_class_rows]
    return [
        Problem(name, f"class {label!r} has {n} row(s); each class needs {min_class_rows}")
        for label, n in rare.items()
    ]


def _feature_problems(name: str, series: pd.Series) -> list[Problem]:
    kind = _feature_kind(series)
    if kind is None:
        return [Problem(name, f"unsupported type {series.dtype}; use numbers or categories")]
    values = series.dropna()
    if values.empty:
        return [Problem(name, "column is empty (every value is missing)")]
    if kind == "numeric" and not np.isfinite(values.astype(float)).all():
        return [Problem(name, "column holds infinite values")]
    if kind == "categorical" and _is_text(series):
        numeric = pd.to_numeric(values, errors="coerce")
        bad = values[numeric.isna()]
        if numeric.notna().mean() >= 0.5:
            examples = ", ".join(repr(v) for v in bad.unique()[:3])
            return [
                Problem(
                    name,
                    f"wrong type: mostly numbers but {len(bad)} value(s) are not ({examples})",
                )
            ]
    if values.nunique() < 2:
        return [
            Problem(name, f"column is constant (only {values.iloc[0]!r}); it carries no signal")
        ]
    return []


def infer_schema(dataset: Dataset, task: Task | str | None = None) -> DatasetSchema:
    """Describe each feature as training saw it: kind, dtype, range or categories, missing count.

    ``task`` None infers it from the target (:func:`infer_task`).
    """
    specs = []
    for column in dataset.features.columns:
        series = dataset.frame[column]
        kind = _feature_kind(series)
        spec = FeatureSpec(
            name=str(column),
            kind=kind or "categorical",
            dtype=str(series.dtype),
            missing_in_training=int(series.isna().sum()),
        )
        values = series.dropna()
        if kind == "numeric":
            spec.min, spec.max = float(values.min()), float(values.max())
        else:
            spec.categories = sorted(map(str, values.unique()))[:MAX_STORED_CATEGORIES]
        specs.append(spec)
    resolved = infer_task(dataset.labels, task)
    classes = sorted(map(str, dataset.labels.unique())) if resolved is Task.CLASSIFICATION else []
    return DatasetSchema(target=dataset.target, task=resolved, classes=classes, features=specs)


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable SHA-256 of a table's columns, dtypes and values (row order included)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
