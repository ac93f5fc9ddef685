"""The preprocessing inside every candidate Pipeline: the raw columns in, numbers out.

It lives in the logged model, so the predictor takes the raw features training took and
cannot drift from training (no training-serving skew). Which columns arrive here and how each is
encoded is decided from the table first (``data``: the schema's features and ``columns``):
columns the schema dropped are ignored (``remainder="drop"``), so a row may carry them or not.
"""

from __future__ import annotations

from itertools import groupby

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_stack.data import MIN_CATEGORY_ROWS, DatasetSchema


def build_preprocessor(schema: DatasetSchema, *, scale: bool) -> ColumnTransformer:
    """Impute every column (so a missing value at serving time is handled as in training).

    A categorical of many values is one-hot encoded with a bound (its ``max_categories``): the
    most frequent values get a column each, the rare and the unseen share one, so the matrix
    the estimators see stays narrow however many distinct values the column has.
    """
    numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, object, list[str]]] = []
    if schema.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), schema.numeric))
    plain = [f.name for f in schema.features if f.kind == "categorical" and not f.max_categories]
    if plain:
        transformers.append(("categorical", _one_hot(None), plain))
    bounded = sorted(
        (f for f in schema.features if f.kind == "categorical" and f.max_categories),
        key=lambda f: f.max_categories or 0,
    )
    for bound, specs in groupby(bounded, key=lambda f: f.max_categories):
        transformers.append((f"bounded_{bound}", _one_hot(bound), [f.name for f in specs]))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def _one_hot(max_categories: int | None) -> Pipeline:
    """Most-frequent imputation then one-hot; bounded when ``max_categories`` is given."""
    encoder = (
        OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        if max_categories is None
        else OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            max_categories=max_categories,
            min_frequency=MIN_CATEGORY_ROWS,
            sparse_output=False,
        )
    )
    return Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("onehot", encoder)])
