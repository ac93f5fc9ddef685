"""The feature schema saved next to a model, the task a target asks for, and inferring both.

:class:`DatasetSchema` is the contract between training and everything after it: the
predictor builds its request model from it, monitoring compares traffic with it. Apart from
the column rules (:mod:`~mlops_stack.data.columns`), whose decisions it records: the schema is
a saved shape read back long after training, the rules are code that runs only while training
and changes on its own. The task is inferred here because the schema records it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, Field

from mlops_stack.data.columns import (
    DEFAULT_MAX_CATEGORIES,
    ColumnAction,
    ColumnTreatment,
    plan_columns,
)
from mlops_stack.data.dataset import Dataset
from mlops_stack.data.values import value_range
from mlops_stack.names import Task

MAX_STORED_CATEGORIES = 1000
MAX_CLASSIFICATION_CLASSES = 20
"""A numeric target of whole numbers with more distinct values than this is inferred as
regression (a count, a price in cents); with this many or fewer, as classes."""


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
        spec.min, spec.max = value_range(series)
    else:
        # the most frequent first when there are more than can be stored
        frequent = series.dropna().astype(str).value_counts().index[:MAX_STORED_CATEGORIES]
        spec.categories = sorted(frequent)
    if treatment.action == ColumnAction.BOUNDED_CATEGORICAL:
        spec.max_categories = max_categories
    return spec
