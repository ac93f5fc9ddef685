"""Sections of the predictor: its HTTP API, the model it serves, and the prediction log every
answered row goes to."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mlops_stack.settings.fields import OptionalText, formerly


class ApiSettings(BaseModel):
    """The predictor's API: where it listens, who may call it, how large a request may be."""

    api_host: str = Field("127.0.0.1", description="Address `mlops serve api` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `mlops serve api` listens on.")
    api_root_path: str = Field(
        "",
        description=(
            "Path prefix a reverse proxy serves the predictor under (/api in the compose "
            "stack), so /docs and the OpenAPI links point at the public path."
        ),
    )
    api_workers: int = Field(
        1,
        ge=0,
        le=32,
        description=(
            "uvicorn worker processes of `mlops serve api`. 0: one per CPU the process may use "
            "(its CPU affinity, lowered to its cgroup's CPU quota; at most 8). Above 1, "
            "/metrics sums every worker (prometheus_client's multiprocess mode, files in a "
            "fresh directory under TMPDIR per start)."
        ),
    )
    api_keys: OptionalText = Field(
        None,
        description=(
            "Predictor API keys, one 'name:sha256hex' per line or comma (the SHA-256 of the "
            "key; `mlops api-key new NAME` makes one). Set, every route but /health and /ready "
            "needs an X-API-Key header. Empty: no key needed (development). Usually given as "
            "MLOPS_API_KEYS_FILE."
        ),
    )
    rate_limit_per_minute: int = Field(
        0,
        ge=0,
        description=(
            "Requests per minute the predictor accepts from one API key (or one client address "
            "without keys); beyond it 429 with Retry-After. Counted in Redis when "
            "MLOPS_REDIS_URL is set (shared by workers), else per process. 0: no limit."
        ),
    )
    max_batch_rows: int = Field(1000, ge=1, description="Most rows one /predict/batch may carry.")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, description="Largest request body the predictor reads, in bytes."
    )
    max_json_depth: int = Field(
        32,
        ge=3,
        le=500,
        description=(
            "Deepest nesting of arrays and objects a request body may have (a /predict/batch "
            "body needs 3); deeper bodies get 422 before they are parsed."
        ),
    )
    max_feedback_items: int = Field(1000, ge=1, description="Most labels one /feedback may carry.")
    feedback_wait_seconds: float = Field(
        2.0,
        ge=0,
        le=30,
        description=(
            "How long /feedback keeps looking for answered rows it does not know yet before "
            "calling them unknown (404): the answer may come from another worker or replica, "
            "whose rows reach the database only when the log writer has written them "
            "(MLOPS_PREDICTION_LOG_WRITER_WAIT_MS after the stream). 0: answer at once."
        ),
    )


class InferenceSettings(BaseModel):
    """The predictor's model: which version it serves, how it scores, how a new one arrives."""

    model_alias: str = Field("champion", description="Registry alias the predictor serves.")
    inference_path: Literal["auto", "sklearn"] = Field(
        "auto",
        description=(
            "auto: score through the model compiled to ONNX (onnxruntime) when it converts and "
            "its answers match the scikit-learn pipeline's on the holdout logged with it, else "
            "through the pipeline; sklearn: always the pipeline. /model says which serves."
        ),
    )
    onnx_tolerance: float = Field(
        1e-5,
        gt=0,
        le=0.01,
        description=(
            "Largest absolute difference in a class probability (relative and absolute for a "
            "regression value) allowed between the ONNX model and the pipeline when verifying "
            "at load; classes must be identical. Measured differences are below 1e-6 (float32)."
        ),
    )
    microbatch_enabled: bool = Field(
        True,
        description=(
            "Score the rows of concurrent /predict and /predict/batch requests in one model "
            "call (each answered and logged as its own request); off: one call per request."
        ),
    )
    microbatch_max_rows: int = Field(
        64,
        ge=1,
        description=(
            "Most rows one micro-batch scores; a /predict/batch request with more rows is "
            "scored alone, never split."
        ),
    )
    microbatch_max_wait_ms: float = Field(
        1.0,
        ge=0,
        le=2,
        description=(
            "Longest a request waits for companions, and only after the previous batch held "
            "several requests; 0: dispatch at the end of the event-loop tick it arrived in. "
            "Requests arriving while a batch is scored form the next one."
        ),
    )
    reload_poll_seconds: float = Field(
        10.0, gt=0, description="How often the predictor asks the registry whether the alias moved."
    )
    model_events_channel: str = Field(
        "mlops:model-events",
        description="Redis pub/sub channel announcing alias changes (used when MLOPS_REDIS_URL).",
    )


class PredictionLogSettings(BaseModel):
    """The prediction log: every answered row, on its way to the monitoring database.

    Its fields say ``prediction_log`` where they said ``log`` before, which also named the
    application's logs (``log_level``, ``log_json``); each still reads the variable it had
    (``MLOPS_LOG_BATCH_SIZE`` and the like, :func:`~mlops_stack.settings.fields.formerly`), so
    a ``.env`` written for the old names keeps working, and its new variable wins when both
    are set.
    """

    prediction_log_enabled: bool = Field(
        True,
        validation_alias=formerly("prediction_log_enabled", "MLOPS_LOG_PREDICTIONS"),
        description=(
            "Log every answered row for monitoring. Turn off only to measure what logging "
            "costs (benchmarks/serve.py): without it there is no drift or quality monitoring."
        ),
    )
    prediction_stream: str = Field("mlops:predictions", description="Redis stream of predictions.")
    stream_group: str = Field(
        "log-writer", description="Consumer group that writes the stream to the database."
    )
    prediction_log_batch_rows: int = Field(
        500,
        ge=1,
        validation_alias=formerly("prediction_log_batch_rows", "MLOPS_LOG_BATCH_SIZE"),
        description="Most prediction rows written per batch.",
    )
    prediction_log_writer_wait_ms: int = Field(
        500,
        ge=0,
        le=5000,
        validation_alias=formerly("prediction_log_writer_wait_ms", "MLOPS_LOG_WRITER_WAIT_MS"),
        description=(
            "How long `mlops log-writer` lets entries gather after reading fewer than "
            "MLOPS_PREDICTION_LOG_BATCH_ROWS, before it writes them: one commit for many rows "
            "instead of one per row (a row reaches the database that much later). 0: write at "
            "once."
        ),
    )
    prediction_log_flush_seconds: float = Field(
        0.5,
        gt=0,
        validation_alias=formerly("prediction_log_flush_seconds", "MLOPS_LOG_FLUSH_SECONDS"),
        description=(
            "Longest the log sink's thread waits before it writes a batch of shadow records or "
            "replays the spool (answered rows are written before their answer, not batched by "
            "time)."
        ),
    )
    prediction_log_buffer_rows: int = Field(
        100_000,
        ge=100,
        validation_alias=formerly("prediction_log_buffer_rows", "MLOPS_LOG_BUFFER_ROWS"),
        description=(
            "Shadow records held in memory while the log path is down; beyond this they are "
            "spooled to <data_dir>/spool and replayed when it returns."
        ),
    )
