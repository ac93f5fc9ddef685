"""Sections of where and how the stack runs: the environment, storage, Prefect and the worker,
the application's logs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mlops_stack.settings.fields import OptionalText

DEV_SECRET_MARKER = "mlops-dev-only"
"""Part of every development default secret; production refuses any value containing it."""


class EnvironmentSettings(BaseModel):
    """Environment: development, or production with its refusals."""

    environment: Literal["development", "production"] = Field(
        "development",
        description=(
            "production: refuse to start with a development default secret (any value "
            "containing 'mlops-dev-only'), and the predictor refuses to start without API keys."
        ),
    )


class StorageSettings(BaseModel):
    """Storage: where the state lives (files, MLflow, the monitoring database, Redis)."""

    data_dir: Path = Field(
        Path("mlops-data"),
        description="Directory holding the embedded state: MLflow DB, artifacts, Prefect home.",
    )
    tracking_uri: OptionalText = Field(
        None,
        description="MLflow tracking URI; empty means sqlite:///<data_dir>/mlflow.db (embedded).",
    )
    artifact_location: OptionalText = Field(
        None,
        description=(
            "Artifact location for a new experiment; empty means <data_dir>/artifacts when "
            "tracking is embedded, and the server's own default when tracking is a server."
        ),
    )
    experiment_name: str = Field("mlops-stack", description="MLflow experiment for training runs.")
    model_name: str = Field("mlops-classifier", description="Registered model name.")
    monitoring_db_url: OptionalText = Field(
        None,
        description=(
            "SQLAlchemy URL of the monitoring database (predictions, feedback, results); "
            "empty means sqlite:///<data_dir>/monitoring.db."
        ),
    )
    redis_url: OptionalText = Field(
        None,
        description=(
            "Redis URL; set, predictions go through a Redis stream drained by `mlops log-writer`; "
            "empty, the predictor writes them to the database itself from an in-process queue."
        ),
    )

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


class OrchestrationSettings(BaseModel):
    """Prefect and the worker: where flow runs are recorded, what the worker runs."""

    prefect_api_url: OptionalText = Field(
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


class LoggingSettings(BaseModel):
    """Application logs: the stack's own structured log lines (not the prediction log)."""

    log_level: str = Field("INFO", description="Log level of the stack's structured logs.")
    log_json: bool = Field(False, description="JSON log lines (services) instead of console text.")
