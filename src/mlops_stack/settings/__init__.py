"""The stack's one settings object, declared in sections.

Every option is an environment variable prefixed ``MLOPS_`` with a default that runs the whole
loop embedded: MLflow on a SQLite file, artifacts and Prefect's state under one data directory,
no server to install. The compose files only override URLs; ``.env.example`` documents each
variable, section by section (rendered from these fields by ``mlops_stack.env_example``).
Keeping all configuration here means no other module reads an ``MLOPS_*`` variable; the few
that touch ``os.environ`` do it for other programs' variables (Prefect's, MLflow's, Prometheus'
multiprocess directory), each named with its reason in docs/architecture.md, "The process
environment".

Each section (storage, data, training, the gate, the predictor's API and model, the prediction
log, monitoring, ...) is a model of its own in a module of its part of the stack; ``Settings``
composes them all into one flat object, so ``settings.api_port`` reads the same whichever
section declares it. A new option is a field on its section (``SECTIONS`` lists them).
"""

from mlops_stack.settings.composed import SECTIONS, Settings, get_settings
from mlops_stack.settings.dashboard import DashboardSettings
from mlops_stack.settings.fields import (
    PREFIX,
    former_names,
    formerly,
    variable,
    variable_names,
    variable_of,
)
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

__all__ = [
    "DEV_SECRET_MARKER",
    "PREFIX",
    "SECTIONS",
    "ApiSettings",
    "ChallengerSettings",
    "DashboardSettings",
    "DataSettings",
    "EnvironmentSettings",
    "GateSettings",
    "InferenceSettings",
    "LoggingSettings",
    "MonitoringSettings",
    "OrchestrationSettings",
    "PredictionLogSettings",
    "RetentionSettings",
    "RetrainSettings",
    "SecretFilesSource",
    "Settings",
    "StorageSettings",
    "TrainingSettings",
    "former_names",
    "formerly",
    "get_settings",
    "variable",
    "variable_names",
    "variable_of",
]
