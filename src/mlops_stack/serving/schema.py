"""Request models built from the served model's MLflow signature.

The predictor never guesses at input: each feature of the signature becomes a strictly typed
field (a string is not a number, a float is not an integer, NaN and infinity are refused), every
key must be present and no other key is allowed. A null is accepted only where the signature
marks the column optional, which training does for columns it saw missing and imputes.
Feature names are used as aliases, so names with spaces ("mean radius") work as JSON keys and
appear as such in every 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, create_model

_PYTHON_TYPES: dict[str, type] = {
    "double": float,
    "float": float,
    "long": int,
    "integer": int,
    "string": str,
    "boolean": bool,
}


def _no_nul(value: str) -> str:
    """Refuse text holding NUL: PostgreSQL stores no NUL in text or JSON, so a row carrying one
    could be answered but never written to the prediction log."""
    if "\x00" in value:
        raise ValueError("NUL characters (\\u0000) are not accepted in text features")
    return value


NO_NUL_PATTERN = "^[^\\u0000]*$"
TEXT = Annotated[
    str, AfterValidator(_no_nul), WithJsonSchema({"type": "string", "pattern": NO_NUL_PATTERN})
]
"""A string feature as requests must send it; /openapi.json states the rule as a pattern, so a
client generated from the spec knows it too."""


@dataclass(frozen=True)
class FeatureField:
    """One input column of the signature: name, MLflow type and whether null is allowed."""

    name: str
    dtype: str
    required: bool

    @property
    def python_type(self) -> Any:
        """The type a request's value must have (text without NUL for a string column)."""
        return TEXT if self.dtype == "string" else _PYTHON_TYPES[self.dtype]


class UnsupportedSignature(ValueError):
    """The model's signature has a column type the predictor cannot take as JSON."""


def fields_from_signature(signature: ModelSignature | None) -> list[FeatureField]:
    """The signature's input columns, in order; refuses models without a column signature."""
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        raise UnsupportedSignature("the model has no named input columns in its signature")
    fields = []
    for col in signature.inputs.inputs:
        dtype = col.type.name
        if dtype not in _PYTHON_TYPES:
            raise UnsupportedSignature(f"column '{col.name}' has unsupported type {dtype}")
        fields.append(FeatureField(col.name, dtype, col.required))
    return fields


def build_features_model(fields: list[FeatureField]) -> type[BaseModel]:
    """A pydantic model of one row of raw features, exactly as the signature describes it."""
    definitions: dict[str, Any] = {}
    for index, field in enumerate(fields):
        annotation: Any = field.python_type if field.required else field.python_type | None
        definitions[f"f{index}"] = (
            annotation,
            Field(alias=field.name, strict=True, description=_describe(field)),
        )
    return create_model(
        "Features",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False),
        **definitions,
    )


def build_request_models(
    features: type[BaseModel], max_rows: int
) -> tuple[type[BaseModel], type[BaseModel]]:
    """Bodies of /predict (``{"features": {...}}``) and /predict/batch (``{"rows": [...]}``)."""
    strict = ConfigDict(extra="forbid")
    single = create_model("PredictRequest", __config__=strict, features=(features, ...))
    batch = create_model(
        "BatchPredictRequest",
        __config__=strict,
        rows=(list[features], Field(min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )
    return single, batch


def _describe(field: FeatureField) -> str:
    nullable = "" if field.required else "; null allowed (imputed by the model)"
    return f"{field.dtype}{nullable}"


def rows_to_frame(rows: list[dict[str, Any]], fields: list[FeatureField]) -> pd.DataFrame:
    """Validated rows as the DataFrame the pipeline was trained on (column order and dtypes).

    Missing values become NaN, which is what training saw in the table (a None in a text
    column would not be recognised as missing by scikit-learn's imputers).
    """
    columns = {}
    for field in fields:
        values = [row[field.name] for row in rows]
        if field.dtype in {"double", "float"} or (
            field.dtype in {"long", "integer"} and any(v is None for v in values)
        ):
            columns[field.name] = np.array(
                [np.nan if v is None else v for v in values], dtype="float64"
            )
        elif field.dtype in {"long", "integer"}:
            columns[field.name] = np.array(values, dtype="int64")
        else:
            columns[field.name] = pd.Series(
                [np.nan if v is None else v for v in values], dtype="object"
            )
    return pd.DataFrame(columns)
