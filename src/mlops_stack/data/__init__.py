"""Datasets: loading, the column decisions, the inferred feature schema, validation, a fingerprint.

A dataset is a table with a target column. This package's front re-exports what the rest of
the project uses, so callers import from ``mlops_stack.data`` and never from a submodule.
One module per concern, each importing only the ones listed before it:

- :mod:`~mlops_stack.data.values`: small value readings the others share (internal);
- :mod:`~mlops_stack.data.problems`: :class:`Problem` and :class:`DataValidationError`;
- :mod:`~mlops_stack.data.dataset`: :class:`Dataset`, made trainable on construction, and
  :func:`fingerprint`;
- :mod:`~mlops_stack.data.load`: :func:`load_dataset` (CSV of any delimiter and encoding,
  Parquet, the built-in tables);
- :mod:`~mlops_stack.data.columns`: what training does with each column (kept, bounded,
  dropped) and why;
- :mod:`~mlops_stack.data.schema`: :class:`DatasetSchema` saved with a model,
  :func:`infer_task` and :func:`infer_schema`;
- :mod:`~mlops_stack.data.validate`: :func:`validate_dataset`, every problem at once.
"""

from mlops_stack.data.columns import MIN_CATEGORY_ROWS, ColumnAction, ColumnTreatment
from mlops_stack.data.dataset import (
    BUILTIN_DATASET,
    BUILTIN_REGRESSION_DATASET,
    Dataset,
    fingerprint,
)
from mlops_stack.data.load import load_dataset
from mlops_stack.data.problems import SHOWN_PROBLEMS, DataValidationError, Problem
from mlops_stack.data.schema import (
    MAX_STORED_CATEGORIES,
    DatasetSchema,
    FeatureSpec,
    infer_schema,
    infer_task,
)
from mlops_stack.data.validate import validate_dataset

__all__ = [
    "BUILTIN_DATASET",
    "BUILTIN_REGRESSION_DATASET",
    "MAX_STORED_CATEGORIES",
    "MIN_CATEGORY_ROWS",
    "SHOWN_PROBLEMS",
    "ColumnAction",
    "ColumnTreatment",
    "DataValidationError",
    "Dataset",
    "DatasetSchema",
    "FeatureSpec",
    "Problem",
    "fingerprint",
    "infer_schema",
    "infer_task",
    "load_dataset",
    "validate_dataset",
]
