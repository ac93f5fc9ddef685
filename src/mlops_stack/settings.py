"""The stack's one settings object.

Every option is an environment variable prefixed ``MLOPS_`` with a default that runs the whole
loop embedded: MLflow on a SQLite file, artifacts and Prefect's state under one data directory,
no server to install. The compose files only override URLs; ``.env.example`` documents each
variable (rendered from these fields by ``mlops_stack.env_example``). Keeping all configuration
here means a service never reads ``os.environ`` itself, and ``prepare_environment`` is the one
place that writes it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEV_SECRET_MARKER = "mlops-dev-only"
"""Part of every development default secret; production refuses any value containing it."""


class SecretFilesSource(PydanticBaseSettingsSource):
    """``MLOPS_<NAME>_FILE=/run/secrets/x`` sets ``<name>`` from that file's content.

    Secrets then live in files (compose secrets, a VM's root-only directory) rather than in
    the environment that ``docker inspect`` and crash reports show. A file value wins over the
    same variable set inline, so a production override can add ``*_FILE`` on top of a base
    file that sets development values. A named file that is missing is an error that names the
    variable, never a silent fallback to a default; an empty file means "not set" (an optional
    secret such as the alert webhook), which production refuses where a value is required.

    This is the only reader of ``MLOPS_*_FILE``: the image's entrypoint
    (infrastructure/docker-entrypoint.sh) does the same for the servers we do not write
    (MLflow, Prefect, JupyterLab) and leaves ``MLOPS_*`` alone.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"MLOPS_{field_name.upper()}_FILE"
        path = os.environ.get(variable, "").strip()
        if not path:
            return None, field_name, False
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{variable}={path}: cannot read the file ({exc.strerror})") from None
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Configuration of every stack component, read from ``MLOPS_*`` variables and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then ``MLOPS_*_FILE`` files, then variables, then ``.env``."""
        return (
            init_settings,
            SecretFilesSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    environment: Literal["development", "production"] = Field(
        "development",
        description=(
            "production: refuse to start with a development default secret (any value "
            "containing 'mlops-dev-only'), and the predictor refuses to start without API keys."
        ),
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        Path("mlops-data"),
        description="Directory holding the embedded state: MLflow DB, artifacts, Prefect home.",
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; empty means sqlite:///<data_dir>/mlflow.db (embedded).",
    )
    artifact_location: str | None = Field(
        None,
        description=(
            "Artifact location for a new experiment; empty means <data_dir>/artifacts when "
            "tracking is embedded, and the server's own default when tracking is a server."
        ),
    )
    experiment_name: str = Field("mlops-stack", description="MLflow experiment for training runs.")
    model_name: str = Field("mlops-classifier", description="Registered model name.")

    # --- data ----------------------------------------------------------------------------
    dataset_path: Path | None = Field(
        None,
        description="CSV or Parquet file to train on; empty means the built-in breast cancer data.",
    )
    target_column: str = Field("target", description="Name of the label column in the dataset.")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description=(
            "What the model predicts: auto infers it from the target (numbers with a fraction "
            "or more than 20 distinct whole numbers: regression; else classification)."
        ),
    )
    min_rows: int = Field(50, ge=2, description="Fewest rows a dataset may have to be trained on.")
    min_class_rows: int = Field(
        10, ge=2, description="Fewest rows each class needs (stratified split and CV need some)."
    )
    max_categories: int = Field(
        50,
        ge=2,
        description=(
            "Most one-hot columns a categorical feature gets: a column with more distinct values "
            "keeps its most frequent ones and groups the rest, so training time and memory stay "
            "bounded."
        ),
    )
    reference_sample_rows: int = Field(
        5000, ge=10, description="Rows of training features kept as the drift reference sample."
    )

    # --- training ------------------------------------------------------------------------
    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for evaluation.")
    random_seed: int = Field(42, description="Seed for the split, CV folds and the estimators.")
    candidates: str = Field(
        "linear,random_forest,hist_gradient_boosting",
        description=(
            "Comma-separated candidate models to train (a subset trains faster): linear "
            "(logistic regression for classes, ridge for numbers; logistic_regression is "
            "accepted too), random_forest, hist_gradient_boosting."
        ),
    )
    cv_folds: int = Field(
        5, ge=2, description="Cross-validation folds used to choose the best candidate."
    )
    latency_samples: int = Field(
        200, ge=10, description="Single-row predictions timed for the latency p50/p95 metrics."
    )
    selection_max_rows: int = Field(
        20_000,
        ge=100,
        description=(
            "Largest training split cross-validated whole. Above it, every candidate is "
            "cross-validated and fitted on a seeded (stratified) sample of this many rows, and "
            "only the winner is refit on all training rows (a random forest's trees then draw "
            "this many rows each): model selection on a large table stays within minutes."
        ),
    )

    # --- the promotion gate --------------------------------------------------------------
    gate_metric: str = Field(
        "auto",
        description=(
            "Metric the gate compares: auto (roc_auc for classification, rmse for regression), "
            "or accuracy, f1, roc_auc, precision, recall (classification), rmse, mae, r2 "
            "(regression). Lower is better for rmse and mae."
        ),
    )
    gate_min_accuracy: float = Field(
        0.80, ge=0, le=1, description="Classification: absolute floor for accuracy."
    )
    gate_min_f1: float = Field(
        0.80, ge=0, le=1, description="Classification: absolute floor for F1."
    )
    gate_min_roc_auc: float = Field(
        0.85, ge=0, le=1, description="Classification: absolute floor for ROC AUC."
    )
    gate_min_r2: float | None = Field(
        0.0,
        le=1,
        description=(
            "Regression: absolute floor for R^2; the default 0 refuses a model worse than "
            "predicting the mean. Empty: no floor."
        ),
    )
    gate_max_rmse: float | None = Field(
        None, ge=0, description="Regression: absolute ceiling for RMSE (target units). Empty: none."
    )
    gate_max_mae: float | None = Field(
        None, ge=0, description="Regression: absolute ceiling for MAE (target units). Empty: none."
    )
    gate_min_improvement: float = Field(
        0.0,
        ge=0,
        description=(
            "A candidate replaces the champion only if its gate metric beats the champion's by "
            "MORE than this on the same evaluation data; a tie keeps the champion."
        ),
    )

    # --- serving (the predictor) ---------------------------------------------------------
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
    api_keys: str | None = Field(
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
    max_batch_rows: int = Field(1000, ge=1, description="Most rows one /predict/batch may carry.")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, description="Largest request body the predictor reads, in bytes."
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
    reload_poll_seconds: float = Field(
        10.0, gt=0, description="How often the predictor asks the registry whether the alias moved."
    )
    model_events_channel: str = Field(
        "mlops:model-events",
        description="Redis pub/sub channel announcing alias changes (used when MLOPS_REDIS_URL).",
    )

    # --- prediction log -------------------------------------------------------------------
    log_predictions: bool = Field(
        True,
        description=(
            "Log every answered row for monitoring. Turn off only to measure what logging "
            "costs (benchmarks/serve.py): without it there is no drift or quality monitoring."
        ),
    )
    monitoring_db_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the monitoring database (predictions, feedback, results); "
            "empty means sqlite:///<data_dir>/monitoring.db."
        ),
    )
    redis_url: str | None = Field(
        None,
        description=(
            "Redis URL; set, predictions go through a Redis stream drained by `mlops log-writer`; "
            "empty, the predictor writes them to the database itself from an in-process queue."
        ),
    )
    prediction_stream: str = Field("mlops:predictions", description="Redis stream of predictions.")
    stream_group: str = Field(
        "log-writer", description="Consumer group that writes the stream to the database."
    )
    log_batch_size: int = Field(500, ge=1, description="Most prediction rows written per batch.")
    feedback_wait_seconds: float = Field(
        2.0,
        ge=0,
        le=30,
        description=(
            "How long /feedback keeps looking for answered rows it does not know yet before "
            "calling them unknown (404): the answer may come from another worker or replica, "
            "whose rows reach the database only when the log writer has written them "
            "(MLOPS_LOG_WRITER_WAIT_MS after the stream). 0: answer at once."
        ),
    )
    log_writer_wait_ms: int = Field(
        500,
        ge=0,
        le=5000,
        description=(
            "How long `mlops log-writer` lets entries gather after reading fewer than "
            "MLOPS_LOG_BATCH_SIZE, before it writes them: one commit for many rows instead of "
            "one per row (a row reaches the database that much later). 0: write at once."
        ),
    )
    log_flush_seconds: float = Field(
        0.5,
        gt=0,
        description=(
            "Longest the log sink's thread waits before it writes a batch of shadow records or "
            "replays the spool (answered rows are written before their answer, not batched by "
            "time)."
        ),
    )
    log_buffer_rows: int = Field(
        100_000,
        ge=100,
        description=(
            "Shadow records held in memory while the log path is down; beyond this they are "
            "spooled to <data_dir>/spool and replayed when it returns."
        ),
    )

    # --- monitoring ------------------------------------------------------------------------
    monitor_window_rows: int = Field(
        5000, ge=1, description="Monitor window: the last N logged predictions."
    )
    monitor_window_minutes: float | None = Field(
        None, gt=0, description="If set, the window is the last T minutes instead of N rows."
    )
    monitor_min_rows: int = Field(
        200, ge=10, description="Fewer rows in the window than this: the run says not enough data."
    )
    monitor_max_rows: int = Field(
        50_000, ge=100, description="Rows analysed at most; larger windows are sampled (stated)."
    )
    drift_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description=(
            "Chance that a monitor run of clean traffic flags any column at all (family-wise "
            "false-alarm rate): each column's test runs at MLOPS_DRIFT_ALPHA divided by the "
            "number of columns tested (Bonferroni), docs/monitoring.md."
        ),
    )
    drift_min_effect: float = Field(
        0.1,
        ge=0,
        description=(
            "Least movement that counts as drift, next to a significant test: the Wasserstein "
            "distance in reference standard deviations (numbers) or the total variation "
            "distance (categories). Large windows make tiny, harmless moves significant."
        ),
    )
    drift_warning_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Share of drifted features from which status is warning; 0: any feature that "
            "drifted (tests are corrected for testing every column at once)."
        ),
    )
    drift_share: float = Field(
        0.3, ge=0, le=1, description="Share of drifted features from which status is drift."
    )
    quality_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description=(
            "Drop of accuracy, F1 or ROC AUC on labelled rows below the "
            "champion's holdout figure from which status is degraded."
        ),
    )
    quality_error_rise: float = Field(
        0.25,
        ge=0,
        description=(
            "Rise of a regressor's RMSE or MAE on labelled rows over the champion's holdout "
            "figure, relative to it (0.25 = 25 %), from which status is degraded."
        ),
    )
    monitor_min_labelled: int = Field(
        50,
        ge=1,
        description=(
            "Fewest labelled rows in the window from which a quality drop counts as degraded; "
            "below it quality is shown but not judged."
        ),
    )
    alert_webhook_url: str | None = Field(
        None, description="Slack-compatible webhook that alerts are POSTed to; empty: none."
    )
    retrain_enabled: bool = Field(
        False,
        description=(
            "Retrain when a monitor run finds drift or degradation: the original data plus "
            "the labelled rows, gated on fresh labelled rows."
        ),
    )
    shadow_enabled: bool = Field(
        True,
        description=(
            "The predictor also scores every answered row with the `challenger` version, off "
            "the request path, and logs it, so the monitor compares both on the same live rows."
        ),
    )
    shadow_queue_rows: int = Field(
        10_000,
        ge=1,
        description=(
            "Rows waiting for shadow scoring at most; beyond it rows are not shadow-scored "
            "(counted in /metrics): the challenger never slows or blocks the champion."
        ),
    )
    live_promotion_enabled: bool = Field(
        True,
        description=(
            "The monitor promotes a shadow challenger that beats the champion on the same "
            "labelled live rows by more than MLOPS_GATE_MIN_IMPROVEMENT (gate metric)."
        ),
    )
    live_promotion_min_labelled: int = Field(
        200,
        ge=10,
        description="Fewest labelled live rows both models answered before a live promotion.",
    )
    retrain_cooldown_minutes: float = Field(
        60.0, ge=0, description="Least time between two retrains, against retrain storms."
    )
    retrain_min_labelled: int = Field(
        100, ge=10, description="Fewest labelled rows a retrain needs; fewer: skipped."
    )
    monitor_interval_minutes: float = Field(
        10.0, gt=0, description="How often the worker's scheduled monitor deployment runs."
    )
    monitoring_experiment: str = Field(
        "mlops-monitoring", description="MLflow experiment holding monitor runs and HTML reports."
    )
    retention_days: int = Field(
        90,
        ge=0,
        description=(
            "Days the monitoring database keeps predictions, shadow predictions, feedback and "
            "monitor results (runs, their per-feature drift, resolved alerts); older rows are "
            "deleted by the worker's hourly retention/retention deployment (or `mlops "
            "retention`). 0 keeps everything for ever."
        ),
    )
    retention_batch_rows: int = Field(
        5000,
        ge=1,
        description=(
            "Rows one retention transaction deletes at most: short transactions, so the log "
            "writer's inserts never wait long behind a large deletion."
        ),
    )

    # --- Prefect -------------------------------------------------------------------------
    prefect_api_url: str | None = Field(
        None,
        description=(
            "Prefect API URL; empty runs flows in the calling process without Prefect (no "
            "server, no run records)."
        ),
    )

    bootstrap_champion: bool = Field(
        True,
        description=(
            "`mlops worker`: when the registry has no champion, run the train deployment once "
            "so a fresh stack serves predictions without a manual step."
        ),
    )
    worker_run_limit: int = Field(
        2,
        ge=1,
        description=(
            "`mlops worker`: how many flow runs one worker process executes at once (each in "
            "its own subprocess); a run due while every slot is taken waits for a free slot, "
            "here or in another worker (`docker compose up --scale worker=N`)."
        ),
    )

    # --- dashboard -----------------------------------------------------------------------
    dashboard_actions_enabled: bool = Field(
        True,
        description=(
            "Dashboard: the retrain and rollback buttons act. false shows them disabled with "
            "the reason (a read-only dashboard); nginx basic auth guards who reaches it at all."
        ),
    )
    dashboard_prefect_ui_url: str | None = Field(
        None,
        description=(
            "Dashboard: Prefect's UI as the browser reaches it (compose: /prefect), to link a "
            "started retrain run; empty shows the run's id and name without a link."
        ),
    )
    dashboard_api_url: str | None = Field(
        None,
        description=(
            "Dashboard: the predictor's base URL. Every address its host resolves to (one A "
            "record per replica: compose --scale, MLOPS_API_REPLICAS) is asked: /metrics for "
            "the error rate, summed, and /ready for the landing page's 'N of M replicas "
            "ready'. Empty leaves both out (the predictor logs no failed request elsewhere)."
        ),
    )
    dashboard_prometheus_url: str | None = Field(
        None,
        description=(
            "Dashboard: Prometheus' base URL (compose, profile observability: "
            "http://prometheus:9090/prometheus). The Overview and the landing page show the "
            "predictor's SLO figures it records (availability and p99 over 5 min and 1 h, "
            "burn-rate alerts) and the error rate summed over its predictor targets; empty or "
            "unreachable, the error rate comes from every replica of MLOPS_DASHBOARD_API_URL "
            "and the page says so."
        ),
    )
    dashboard_jupyter_url: str | None = Field(
        None,
        description=(
            "Landing page: JupyterLab's base URL to probe (compose, profile notebooks: "
            "http://jupyter:8888/jupyter); empty leaves JupyterLab out of the service list."
        ),
    )
    status_probe_timeout: float = Field(
        2.0,
        gt=0,
        le=30,
        description=(
            "Landing page: seconds each service's health probe may take (they run at once); "
            "one that takes longer shows as down with the timeout as its reason."
        ),
    )

    # --- logging -------------------------------------------------------------------------
    log_level: str = Field("INFO", description="Log level of the stack's structured logs.")
    log_json: bool = Field(False, description="JSON log lines (services) instead of console text.")

    @field_validator(
        "tracking_uri",
        "artifact_location",
        "dataset_path",
        "prefect_api_url",
        "monitoring_db_url",
        "redis_url",
        "alert_webhook_url",
        "monitor_window_minutes",
        "api_keys",
        "dashboard_api_url",
        "dashboard_prefect_ui_url",
        "dashboard_prometheus_url",
        "dashboard_jupyter_url",
        "gate_min_r2",
        "gate_max_rmse",
        "gate_max_mae",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``MLOPS_X=`` (as in .env.example) means "use the default", not "the path ''"."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("gate_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        """Any metric of either task; whether it fits the trained model's task is checked at
        train time (``gate.resolve_metric``), when the task is known."""
        from mlops_stack.gate import AUTO_METRIC
        from mlops_stack.names import HOLDOUT_METRICS, REGRESSION_HOLDOUT_METRICS

        allowed = [AUTO_METRIC, *HOLDOUT_METRICS, *REGRESSION_HOLDOUT_METRICS]
        if value not in allowed:
            raise ValueError(f"must be one of {allowed}")
        return value

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, value: str) -> str:
        """Known names, aliases resolved (``logistic_regression`` is ``linear``), no repeats."""
        from mlops_stack.training import CANDIDATE_ALIASES, CANDIDATE_NAMES

        names = [n.strip() for n in value.split(",") if n.strip()]
        known = [*CANDIDATE_NAMES, *CANDIDATE_ALIASES]
        unknown = sorted(set(names) - set(known))
        if not names or unknown:
            raise ValueError(f"unknown candidate(s) {unknown}; choose from {known}")
        canonical = [CANDIDATE_ALIASES.get(n, n) for n in names]
        return ",".join(dict.fromkeys(canonical))

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> Settings:
        if self.drift_warning_share > self.drift_share:
            raise ValueError("MLOPS_DRIFT_WARNING_SHARE must not exceed MLOPS_DRIFT_SHARE")
        return self

    @model_validator(mode="after")
    def _no_development_secret_in_production(self) -> Settings:
        """A VM must not run on a password that is printed in this repository."""
        if self.environment != "production":
            return self
        leaked = [
            f"MLOPS_{name.upper()}"
            for name, value in self
            if isinstance(value, str) and DEV_SECRET_MARKER in value
        ]
        if leaked:
            raise ValueError(
                f"production refuses the development default secret in {', '.join(leaked)}; "
                "set the real value (infrastructure/prod/init-secrets.sh makes them)"
            )
        embedded = [
            f"MLOPS_{name.upper()}"
            for name in ("tracking_uri", "monitoring_db_url")
            if getattr(self, name) is None
        ]
        if embedded:
            raise ValueError(
                f"production needs the servers' URLs, not embedded files: set {', '.join(embedded)}"
            )
        return self

    @property
    def candidate_names(self) -> list[str]:
        return self.candidates.split(",")

    @property
    def embedded_tracking(self) -> bool:
        """True when MLflow runs in-process on local files rather than against a server."""
        return not self.resolved_tracking_uri.startswith(("http://", "https://", "databricks"))

    @property
    def resolved_tracking_uri(self) -> str:
        """The tracking URI in force: the configured one or the embedded SQLite file."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def resolved_artifact_location(self) -> str | None:
        """Where a new experiment keeps artifacts; None lets a tracking server decide."""
        if self.artifact_location:
            return self.artifact_location
        if self.embedded_tracking:
            return (self.data_dir / "artifacts").resolve().as_uri()
        return None

    @property
    def resolved_monitoring_db_url(self) -> str:
        """The monitoring database in force: the configured URL or the embedded SQLite file."""
        if self.monitoring_db_url:
            return self.monitoring_db_url
        return f"sqlite:///{(self.data_dir / 'monitoring.db').resolve()}"

    @property
    def gate_thresholds(self) -> dict[str, float]:
        """Absolute bounds a candidate must stay within, by metric name: a minimum for a
        higher-better metric, a maximum for a lower-better one (``names.higher_is_better``).
        The gate applies those of the metrics the candidate's task reports."""
        bounds: dict[str, float | None] = {
            "accuracy": self.gate_min_accuracy,
            "f1": self.gate_min_f1,
            "roc_auc": self.gate_min_roc_auc,
            "r2": self.gate_min_r2,
            "rmse": self.gate_max_rmse,
            "mae": self.gate_max_mae,
        }
        return {name: bound for name, bound in bounds.items() if bound is not None}

    def prepare_environment(self) -> None:
        """Create the data directory and point Prefect at it before Prefect is imported.

        Prefect reads its own ``PREFECT_*`` variables at import time, so the embedded defaults
        (state under ``data_dir/prefect``, or the configured server) are exported here. Values
        the user already exported win.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str((self.data_dir / "prefect").resolve()))
        if self.prefect_api_url:
            os.environ.setdefault("PREFECT_API_URL", self.prefect_api_url)
        # No progress bars from MLflow artifact downloads in service logs and CLI output.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # Keep the embedded run quiet and offline: no analytics calls from a laptop.
        os.environ.setdefault("DO_NOT_TRACK", "1")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
