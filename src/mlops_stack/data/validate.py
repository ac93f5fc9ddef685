"""Validation: every reason a loaded table cannot be trained on, reported at once.

Each problem names its column and the error's message is summarised to the first few, because
a traceback from inside a Pipeline (or 214 lines of rare classes) tells a user nothing. Apart
because it reads both the column decisions and the task, and is run once, before training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlops_stack.data.columns import plan_columns
from mlops_stack.data.dataset import Dataset
from mlops_stack.data.problems import SHOWN_PROBLEMS, DataValidationError, Problem
from mlops_stack.data.schema import infer_task
from mlops_stack.data.values import delimiter_name, show
from mlops_stack.names import Task


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
                return f"{message} (one column: the file looks {delimiter_name(sep)}-delimited)"
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
        Problem(name, f"class {show(label)} has {n} row(s); each class needs {min_class_rows}")
        for label, n in rare.items()
    ]


def _regression_target_problems(name: str, labels: pd.Series) -> list[Problem]:
    if ptypes.is_bool_dtype(labels) or not ptypes.is_numeric_dtype(labels):
        examples = ", ".join(show(v) for v in labels.unique()[:3])
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
        return [Problem(name, f"target is constant ({show(labels.iloc[0])}); nothing to learn")]
    return []
