"""What the predictor answers, as pydantic models, so ``/openapi.json`` documents the answers.

The routes return these instances and FastAPI serialises them straight to JSON bytes with
pydantic's serializer (no intermediate dict, no ``json.dumps``); the field order is the key
order of the JSON bodies. Error bodies are declared here too, so every status a route can
answer with (404, 413, 415, 422, 503) has a schema and not only a number; the statuses of
access control (400, 401, 403, 429), which depend on the configuration, are added to the
document by ``serving.openapi``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mlops_stack.names import Task

Prediction = bool | int | float | str
"""A predicted class as the model has it (the JSON type follows the training labels), or the
number a regression model predicts."""

PREDICTION = "The predicted class (classification) or number (regression)."
PROBABILITIES = (
    "Probability of each class, keyed by the class name as text; null for a regression model "
    "(and a classifier that gives none)."
)
WARNINGS = (
    "What the model could not judge in this row's input: each value of a categorical feature "
    "that training never saw, e.g. \"plan: 'platinum' was never seen in training; the model "
    'treats it as unknown". Empty when there is nothing to warn about.'
)


class ModelRef(BaseModel):
    """The registered version that answered."""

    name: str
    version: str


class PredictResponse(BaseModel):
    """The answer to ``/predict``."""

    request_id: str = Field(description="Send it back with the true label to /feedback.")
    model: ModelRef
    prediction: Prediction = Field(description=PREDICTION)
    probabilities: dict[str, float] | None = Field(description=PROBABILITIES)
    warnings: list[str] = Field(description=WARNINGS)


class RowPrediction(BaseModel):
    """One row of a ``/predict/batch`` answer."""

    row: int = Field(description="Position in the request's rows; send it to /feedback.")
    prediction: Prediction = Field(description=PREDICTION)
    probabilities: dict[str, float] | None = Field(description=PROBABILITIES)
    warnings: list[str] = Field(description=f"{WARNINGS} One list per row, about that row.")


class BatchPredictResponse(BaseModel):
    """The answer to ``/predict/batch``: one prediction per row, in the request's order."""

    request_id: str
    model: ModelRef
    predictions: list[RowPrediction]


class FeedbackKey(BaseModel):
    """Which answered row a label is for."""

    request_id: str
    row: int


class FeedbackResponse(BaseModel):
    """How many labels were stored, and the items that match no answered prediction."""

    accepted: int
    unknown: list[FeedbackKey]


class Health(BaseModel):
    """The process answers; says nothing about the model (see /ready)."""

    status: str = "ok"


class ReadyModel(BaseModel):
    """The alias the predictor follows and the version it serves (null: none yet)."""

    name: str
    alias: str
    version: str | None


class PredictionLogStatus(BaseModel):
    """Whether answered rows reach the prediction log as they should, and how many wait."""

    ok: bool = Field(
        description=(
            "false while the log path is degraded (Redis or the database unreachable: answered "
            "rows are spooled and replayed later) or can take no rows at all."
        )
    )
    detail: str
    queue_depth: int = Field(description="Rows answered but not yet handed on (memory, spool).")


class RegistryReachability(BaseModel):
    """The last look at the model registry (an outage does not stop serving)."""

    reachable: bool
    error: str | None
    unreachable_since: str | None
    last_checked: str | None


class ReadyResponse(BaseModel):
    """``/ready``: the same body with 200 when ready (predictions can be answered), 503 when
    not."""

    ready: bool
    model: ReadyModel
    prediction_log: PredictionLogStatus
    registry: RegistryReachability


class FeatureInfo(BaseModel):
    """One input column of the served model's signature."""

    name: str
    type: str = Field(description="MLflow type: double, float, long, integer, string, boolean.")
    nullable: bool


class ShadowInfo(BaseModel):
    """The challenger scored in shadow: its answers are logged, never sent to a client."""

    version: str
    run_id: str
    trained_at: str
    loaded_at: str
    metrics: dict[str, float] = Field(description="Its holdout metrics from training.")
    queued_rows: int = Field(description="Rows waiting for it now.")
    scored_rows: int = Field(description="Rows it scored since the predictor started.")
    dropped_rows: int = Field(
        description="Rows not scored since the predictor started (queue full, or it failed)."
    )


class InferenceInfo(BaseModel):
    """How the served version is scored: the ONNX graph it was compiled to, verified against the
    pipeline at load, or the scikit-learn pipeline itself. Both give the same answers; the
    compiled one costs a fraction of the CPU."""

    path: Literal["onnx", "sklearn"] = Field(
        description=(
            "onnx: the model compiled to ONNX and run by onnxruntime (float32); sklearn: the "
            "scikit-learn pipeline (when it does not convert, fails verification, or "
            "MLOPS_INFERENCE_PATH=sklearn)."
        )
    )
    reason: str = Field(
        description='"verified" for onnx; otherwise why the pipeline serves (one sentence).'
    )
    verified_on: Literal["holdout", "reference sample"] | None = Field(
        description=(
            "The rows both paths scored at load: the holdout sample logged with the model, or "
            "for a model logged without one its reference sample of training rows; null when "
            "no comparison ran."
        )
    )
    verified_rows: int = Field(
        description=(
            "Rows compared: the sample as logged plus the same rows with a fixed share of "
            "numeric cells missing (checks the imputer); 0 when no comparison ran."
        )
    )
    max_abs_diff: float | None = Field(
        description=(
            "Largest absolute difference between the two paths' probabilities (a regression "
            "model's values) over the compared rows; null when none was measured."
        )
    )
    tolerance: float | None = Field(
        description=(
            "MLOPS_ONNX_TOLERANCE at load: the largest difference allowed (absolute for "
            "probabilities; relative plus absolute for regression values). Classes must be "
            "identical on every row."
        )
    )


class ModelInfo(BaseModel):
    """``/model``: the served version, its task, run, metrics, classes and features, and the
    challenger scored in shadow."""

    name: str
    version: str
    alias: str
    task: Task = Field(description="classification (a class and probabilities) or regression.")
    run_id: str
    trained_at: str
    loaded_at: str
    metrics: dict[str, float]
    classes: list[str] = Field(description="The classes as text; empty for a regression model.")
    features: list[FeatureInfo]
    inference: InferenceInfo = Field(
        description="Which path scores requests (ONNX, verified at load, or the pipeline) and why."
    )
    shadow: ShadowInfo | None = Field(
        default=None,
        description=(
            "The `challenger` version scoring live rows in shadow; null when there is none (no "
            "challenger, it cannot answer the champion's rows, or MLOPS_SHADOW_ENABLED=false)."
        ),
    )


class ErrorMessage(BaseModel):
    """An error explained in one sentence (400, 401, 403, 413, 415, 429, 503)."""

    detail: str


class FieldError(BaseModel):
    """One reason a body was refused: where (``loc``), why (``msg``), what kind (``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """422: every problem of the body at once."""

    detail: list[FieldError]


Responses = dict[int | str, dict[str, Any]]
"""The ``responses=`` argument of a route: status code to schema and description."""

TOO_LARGE: Responses = {
    413: {"model": ErrorMessage, "description": "The body is larger than MLOPS_MAX_BODY_BYTES."}
}
NOT_JSON: Responses = {
    415: {
        "model": ErrorMessage,
        "description": "The body is not sent as application/json (or a +json type), or has no "
        "Content-Type at all.",
    }
}
INVALID: Responses = {
    422: {
        "model": InvalidRequest,
        "description": "The body does not match, is not JSON, or nests deeper than "
        "MLOPS_MAX_JSON_DEPTH; every problem listed.",
    }
}
NO_MODEL: Responses = {
    503: {"model": ErrorMessage, "description": "No version holds the alias yet: nothing to serve."}
}
UNAVAILABLE: Responses = {
    503: {
        "model": ErrorMessage,
        "description": (
            "No version holds the alias yet (nothing to serve), or the prediction log can take "
            "no rows (Redis unreachable and the spool not writable): nothing was logged, retry."
        ),
    }
}
"""The 503 of the prediction routes: a 200 promises the rows are logged durably."""
