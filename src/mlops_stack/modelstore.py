"""Logging a trained pipeline to MLflow and loading it back, the same way everywhere.

The model is logged with the scikit-learn flavour (skops format: loading it executes no
arbitrary pickle) plus a signature whose columns are exactly the raw features training took.
A feature that had missing values in training is marked optional in the signature: the pipeline
imputes it, so a serving request may leave it out; so is a column training dropped (an ID, free
text, a date), which the pipeline ignores. The feature schema and a reference sample of
the training features are logged next to the model, for serving and drift checks, and a sample
of the holdout's features, which the predictor scores at load to verify a compiled (ONNX) copy of
the model against the pipeline on rows training never fitted.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import skops.io
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ColSpec, Schema
from sklearn.pipeline import Pipeline

from mlops_stack.data import DatasetSchema

SCHEMA_ARTIFACT = "schema/schema.json"
REFERENCE_ARTIFACT = "reference/reference_sample.parquet"
HOLDOUT_ARTIFACT = "holdout/holdout_sample.parquet"
HOLDOUT_ROWS = 1000
"""Most holdout rows logged: enough to exercise every branch a converter could get wrong, few
enough that scoring them twice (pipeline and ONNX) keeps a model load well under a second."""
MODEL_NAME_IN_RUN = "model"
# What a logged pipeline needs to load, pinned to the versions that trained it. Listing them
# spares MLflow its requirement inference, which re-imports the model in a subprocess (~5 s).
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy", "mlflow")


def model_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


@contextmanager
def quiet_mlflow_hints() -> Iterator[None]:
    """Silence two MLflow hints that do not apply to how the stack logs models and data.

    "Integer columns cannot hold missing values": our integer columns are the class labels
    (outputs and the dataset's target), never missing; an input with missing values is already
    a float column. "Source can be interpreted in multiple ways": a local file path matches
    two equivalent local-file source types.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=".*interpreted in multiple ways", category=UserWarning
        )
        yield


def build_signature(pipeline: Pipeline, X: pd.DataFrame, schema: DatasetSchema) -> ModelSignature:
    """Signature of the raw columns: optional where training saw missing values, and for every
    column the model does not use (dropped ones: the pipeline ignores them, so a client may
    send the user's full row or leave them out)."""
    inferred = infer_signature(X, pipeline.predict(X.head(5)))
    used = set(schema.feature_names)
    optional = {f.name for f in schema.features if f.missing_in_training} | {
        str(c) for c in X.columns if str(c) not in used
    }
    inputs = Schema(
        [
            ColSpec(col.type, col.name, required=col.name not in optional)
            for col in inferred.inputs.inputs
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def log_pipeline(
    pipeline: Pipeline,
    X_train: pd.DataFrame,
    schema: DatasetSchema,
    *,
    reference_rows: int,
    seed: int,
    X_holdout: pd.DataFrame | None = None,
) -> str:
    """Log the fitted pipeline, its schema, reference sample and holdout sample (``X_holdout``,
    the test split's features; at most ``HOLDOUT_ROWS`` of them) in the active run.

    Returns the model URI to register.
    """
    with quiet_mlflow_hints():
        uri = _log_pipeline(pipeline, X_train, schema, reference_rows=reference_rows, seed=seed)
        if X_holdout is not None and len(X_holdout):
            holdout = X_holdout.sample(n=min(HOLDOUT_ROWS, len(X_holdout)), random_state=seed)
            _log_frame(holdout, HOLDOUT_ARTIFACT)
        return uri


def _log_frame(frame: pd.DataFrame, artifact: str) -> None:
    """Log ``frame`` as the Parquet file ``artifact`` of the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact).parent))


def _log_pipeline(
    pipeline: Pipeline,
    X_train: pd.DataFrame,
    schema: DatasetSchema,
    *,
    reference_rows: int,
    seed: int,
) -> str:
    signature = build_signature(pipeline, X_train, schema)
    example = _input_example(X_train, schema)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    info = mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_NAME_IN_RUN,
        signature=signature,
        input_example=example,
        serialization_format="skops",
        skops_trusted_types=trusted,
        pip_requirements=model_requirements(),
    )
    mlflow.log_dict(json.loads(schema.model_dump_json()), SCHEMA_ARTIFACT)
    sample = X_train.sample(n=min(reference_rows, len(X_train)), random_state=seed)
    _log_frame(sample, REFERENCE_ARTIFACT)
    return str(info.model_uri)


def _input_example(X: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Three training rows complete in the features the model uses (a dropped column, empty
    or not, does not rule a row out)."""
    used = [c for c in schema.feature_names if c in X.columns]
    complete = X.dropna(subset=used) if used else X
    return (complete if len(complete) else X).head(3)


def load_pipeline(model_uri: str) -> Pipeline:
    """Load a logged pipeline (``models:/name@alias``, ``models:/name/3`` or a run URI)."""
    return mlflow.sklearn.load_model(model_uri)


def load_reference(run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The reference sample of training rows logged with the model of ``run_id`` (what drift
    is measured against), or only ``columns`` of it."""
    path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{REFERENCE_ARTIFACT}")
    return pd.read_parquet(path, columns=columns)


def load_holdout(run_id: str) -> pd.DataFrame | None:
    """The holdout sample logged with the model of ``run_id``; None for a model logged before
    holdout samples were (or by code that had no holdout to give)."""
    folder = str(Path(HOLDOUT_ARTIFACT).parent)
    listed = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, folder)}
    if HOLDOUT_ARTIFACT not in listed:
        return None
    path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{HOLDOUT_ARTIFACT}")
    return pd.read_parquet(path)


def load_schema(run_id: str) -> DatasetSchema:
    """The feature schema logged with the model of ``run_id``."""
    data = mlflow.artifacts.load_dict(f"runs:/{run_id}/{SCHEMA_ARTIFACT}")
    return DatasetSchema.model_validate(data)
