"""Row sampling and column typing shared by the drift and quality checks.

One uniform sampler (seeded, positions sorted so a sample reads like its window) for the drift
tests and Evidently's regression report, and one reading of a column as numbers or as text, so
that a value is the same number to the drift test and to the out-of-range count.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

Positions = npt.NDArray[np.int64]  # sorted row positions of a sample

PREDICTION_COLUMN = "prediction"
LABEL_COLUMN = "label"


def sample_positions(rows: int, max_rows: int, seed: int) -> Positions | None:
    """Sorted positions of a uniform random sample of ``max_rows`` rows; None: take them all."""
    if rows <= max_rows:
        return None
    positions = np.random.default_rng(seed).choice(rows, size=max_rows, replace=False)
    positions.sort()
    return positions


def numeric(values: pd.Series) -> pd.Series:
    """Values as numbers; text that is no number becomes missing."""
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        return values
    return pd.to_numeric(values, errors="coerce")


def as_text(values: pd.Series) -> pd.Series:
    """Values as strings, with missing values kept missing (``astype(str)`` makes them 'nan')."""
    values = values.astype(object)
    return values.where(values.isna(), values.astype(str))
