"""Small readings of values that several of the package's modules share.

How a value is shown to a person, whether a column holds text or Python booleans, a numeric
column's range, a delimiter's name: the loader, the column rules, the schema and validation
each need one of these, and a module of their own keeps them from importing one another for
a helper. Internal to :mod:`mlops_stack.data`; nothing outside the package imports them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes


def all_bool(values: pd.Series) -> bool:
    """Python booleans only (a CSV column of True/False with blanks reads as objects)."""
    head = values.iloc[:100]
    is_bool = lambda v: isinstance(v, bool | np.bool_)  # noqa: E731
    return bool(head.map(is_bool).all() and values.map(is_bool).all())


def value_range(series: pd.Series) -> tuple[float, float]:
    """Smallest and largest value, missing ones skipped (NaN when all are missing), in one
    pass each over the array: pandas' own min/max build a mask first."""
    values = (
        series.to_numpy()
        if series.dtype == np.float64
        else series.to_numpy(dtype=float, na_value=np.nan)
    )
    return float(np.fmin.reduce(values)), float(np.fmax.reduce(values))


def is_text(series: pd.Series) -> bool:
    """Object or string dtype: text, or values of several Python types."""
    return bool(ptypes.is_object_dtype(series) or ptypes.is_string_dtype(series))


def show(value: object) -> str:
    """A value as a person reads it: ``7`` and ``'same'``, never ``np.int64(7)``."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def delimiter_name(sep: str) -> str:
    """A delimiter as a message names it: ``tab``, else quoted (``';'``)."""
    return "tab" if sep == "\t" else repr(sep)
