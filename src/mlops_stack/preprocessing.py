"""The preprocessing inside every candidate Pipeline: the raw columns in, numbers out.

It lives in the logged model, so the predictor takes the raw features training took and
cannot drift from training (no training-serving skew). Which columns arrive here and how each is
encoded is decided from the table first (``data``: the schema's features and ``columns``).
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_stack.data import DatasetSchema


def build_preprocessor(schema: DatasetSchema, *, scale: bool) -> ColumnTransformer:
    """Impute every column (so a missing value at serving time is handled as in training)."""
    numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    transformers = []
    if schema.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), schema.numeric))
    if schema.categorical:
        transformers.append(("categorical", categorical, schema.categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
