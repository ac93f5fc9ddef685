"""The one settings object: every section composed, read from ``MLOPS_*`` variables and ``.env``."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Self

from pydantic import BaseModel, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlops_stack.settings.dashboard import DashboardSettings
from mlops_stack.settings.fields import PREFIX, variable
from mlops_stack.settings.infrastructure import (
    DEV_SECRET_MARKER,
    EnvironmentSettings,
    LoggingSettings,
    OrchestrationSettings,
    StorageSettings,
)
from mlops_stack.settings.monitoring import (
    ChallengerSettings,
    MonitoringSettings,
    RetentionSettings,
    RetrainSettings,
)
from mlops_stack.settings.serving import ApiSettings, InferenceSettings, PredictionLogSettings
from mlops_stack.settings.sources import SecretFilesSource
from mlops_stack.settings.training import DataSettings, GateSettings, TrainingSettings

SECTIONS: tuple[type[BaseModel], ...] = (
    EnvironmentSettings,
    StorageSettings,
    DataSettings,
    TrainingSettings,
    GateSettings,
    ApiSettings,
    InferenceSettings,
    PredictionLogSettings,
    MonitoringSettings,
    RetrainSettings,
    ChallengerSettings,
    RetentionSettings,
    OrchestrationSettings,
    DashboardSettings,
    LoggingSettings,
)
"""Every section, in the order ``.env.example`` documents them; each field is in exactly one."""


class Settings(
    EnvironmentSettings,
    StorageSettings,
    DataSettings,
    TrainingSettings,
    GateSettings,
    ApiSettings,
    InferenceSettings,
    PredictionLogSettings,
    MonitoringSettings,
    RetrainSettings,
    ChallengerSettings,
    RetentionSettings,
    OrchestrationSettings,
    DashboardSettings,
    LoggingSettings,
    BaseSettings,
):
    """Configuration of every stack component, read from ``MLOPS_*`` variables and ``.env``.

    Flat on purpose: every caller reads ``settings.api_port``, whichever section declares it;
    the sections are where a field is declared and documented, not a path to reach it.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_by_name=True,  # Settings(prediction_log_batch_rows=...) for a renamed field
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

    @model_validator(mode="after")
    def _no_development_secret_in_production(self) -> Self:
        """A VM must not run on a password that is printed in this repository."""
        if self.environment != "production":
            return self
        leaked = [
            variable(name)
            for name, value in self
            if isinstance(value, str) and DEV_SECRET_MARKER in value
        ]
        if leaked:
            raise ValueError(
                f"production refuses the development default secret in {', '.join(leaked)}; "
                "set the real value (infrastructure/prod/init-secrets.sh makes them)"
            )
        embedded = [
            variable(name)
            for name in ("tracking_uri", "monitoring_db_url")
            if getattr(self, name) is None
        ]
        if embedded:
            raise ValueError(
                f"production needs the servers' URLs, not embedded files: set {', '.join(embedded)}"
            )
        return self

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
