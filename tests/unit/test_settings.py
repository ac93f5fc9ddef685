"""The settings object and its documentation stay in step."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from mlops_stack.env_example import (
    COMPOSE_SETTING_DEFAULTS,
    COMPOSE_VARIABLES,
    PROD_SETTING_DEFAULTS,
    render_env_example,
    section_title,
)
from mlops_stack.settings import SECTIONS, Settings, variable_names, variable_of
from mlops_stack.settings import variable as setting_variable
from tests.support.paths import REPO

ROOT = REPO
COMPOSE_NAMES = {name for name, _, _ in COMPOSE_VARIABLES}


def test_env_example_documents_every_setting_with_its_default():
    text = (ROOT / ".env.example").read_text()
    documented = dict(re.findall(r"^# (MLOPS_[A-Z0-9_]+)=(.*)$", text, flags=re.M))
    documented = {k: v for k, v in documented.items() if k not in COMPOSE_NAMES}
    expected = {}
    for name, field in Settings.model_fields.items():
        default = field.default
        expected[f"MLOPS_{name.upper()}"] = (
            ""
            if default is None
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
    assert documented == expected


def test_env_example_documents_every_compose_variable_with_its_default():
    used: dict[str, set[str]] = {}
    settings = {f"MLOPS_{n.upper()}" for n in Settings.model_fields}
    # a setting's default in each file (prod's may differ from the dev file's it overrides)
    setting_defaults = {"docker-compose.yml": COMPOSE_SETTING_DEFAULTS}
    setting_defaults["docker-compose.prod.yml"] = PROD_SETTING_DEFAULTS
    for name, expected in setting_defaults.items():
        compose = (ROOT / name).read_text()
        # each has a default; $${X} is the container shell's, not compose's
        assert re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)\}", compose) == [], name
        in_file: dict[str, set[str]] = {}
        for variable, default in re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", compose):
            target = in_file if variable in settings else used
            target.setdefault(variable, set()).add(default)
        assert in_file == {k: {v} for k, v in expected.items()}, name
    assert used == {name: {default} for name, default, _ in COMPOSE_VARIABLES}
    assert not COMPOSE_NAMES & settings


def test_env_example_is_what_the_settings_render():
    """Descriptions too: regenerate with `python -m mlops_stack.env_example > .env.example`."""
    assert (ROOT / ".env.example").read_text() == render_env_example()


def test_each_setting_is_declared_in_exactly_one_section():
    declared = [name for section in SECTIONS for name in section.model_fields]
    assert sorted(declared) == sorted(Settings.model_fields)  # none twice, none outside one
    assert all(issubclass(Settings, section) for section in SECTIONS)


def test_env_example_documents_each_section_under_its_header():
    text = (ROOT / ".env.example").read_text()
    settings_part = text.split("# === settings of the stack's Python services")[1]
    headers = re.findall(r"^# --- (.*) ---$", settings_part, flags=re.M)
    assert headers == [section_title(section) for section in SECTIONS]
    parts = re.split(r"^# --- .* ---$", settings_part, flags=re.M)[1:]
    for section, part in zip(SECTIONS, parts, strict=True):
        documented = re.findall(r"^# (MLOPS_[A-Z0-9_]+)=", part, flags=re.M)
        assert documented == [setting_variable(name) for name in section.model_fields], section


def test_every_setting_is_set_by_mlops_and_its_name_first():
    """The variable named after the field wins; a renamed field reads its former one too."""
    for name, field in Settings.model_fields.items():
        assert variable_names(name, field)[0] == setting_variable(name) == f"MLOPS_{name.upper()}"


# the prediction log's fields, renamed from log_*: (field, its former variable, a value)
RENAMED = [
    ("prediction_log_enabled", "MLOPS_LOG_PREDICTIONS", False),
    ("prediction_log_batch_rows", "MLOPS_LOG_BATCH_SIZE", 77),
    ("prediction_log_writer_wait_ms", "MLOPS_LOG_WRITER_WAIT_MS", 1234),
    ("prediction_log_flush_seconds", "MLOPS_LOG_FLUSH_SECONDS", 0.25),
    ("prediction_log_buffer_rows", "MLOPS_LOG_BUFFER_ROWS", 4321),
]


@pytest.mark.parametrize(("field", "former", "value"), RENAMED)
def test_a_renamed_setting_reads_its_former_variable_and_its_new_one_wins(
    monkeypatch, tmp_path, field, former, value
):
    default = Settings.model_fields[field].default
    assert variable_names(field, Settings.model_fields[field]) == [setting_variable(field), former]
    monkeypatch.setenv(former, str(value))
    assert getattr(Settings(_env_file=None), field) == value  # an old .env keeps working
    other = default if isinstance(default, bool) else default * 2
    monkeypatch.setenv(setting_variable(field), str(other))
    assert getattr(Settings(_env_file=None), field) == other  # both set: the new name wins
    monkeypatch.delenv(setting_variable(field))
    monkeypatch.delenv(former)
    env_file = tmp_path / ".env"
    env_file.write_text(f"{former}={value}\n")
    assert getattr(Settings(_env_file=env_file), field) == value  # in .env too
    env_file.write_text(f"{former}={value}\n{setting_variable(field)}={other}\n")
    assert getattr(Settings(_env_file=env_file), field) == other
    assert getattr(Settings(_env_file=None, **{field: value}), field) == value  # by name


def test_a_renamed_setting_reads_the_file_of_either_variable(monkeypatch, tmp_path):
    """``*_FILE`` of a renamed setting: its new name's wins over its former name's and over
    both variables set inline."""
    (tmp_path / "old").write_text("11\n")
    (tmp_path / "new").write_text("22\n")
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_BATCH_ROWS", "33")
    monkeypatch.setenv("MLOPS_LOG_BATCH_SIZE_FILE", str(tmp_path / "old"))
    assert Settings(_env_file=None).prediction_log_batch_rows == 11
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_BATCH_ROWS_FILE", str(tmp_path / "new"))
    assert Settings(_env_file=None).prediction_log_batch_rows == 22


def test_a_bad_value_of_a_renamed_setting_names_its_variable(monkeypatch):
    monkeypatch.setenv("MLOPS_LOG_BATCH_SIZE", "0")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    [error] = caught.value.errors()
    assert variable_of(error["loc"]) == "MLOPS_PREDICTION_LOG_BATCH_ROWS"
    assert variable_of(("api_port",)) == "MLOPS_API_PORT"


def test_defaults_run_embedded_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / 'mlops-data' / 'mlflow.db'}"
    assert settings.resolved_artifact_location == (tmp_path / "mlops-data" / "artifacts").as_uri()
    assert settings.embedded_tracking and settings.dataset_path is None


def test_server_tracking_leaves_artifacts_to_the_server(monkeypatch):
    monkeypatch.setenv("MLOPS_TRACKING_URI", "http://mlflow:5000")
    settings = Settings(_env_file=None)
    assert not settings.embedded_tracking and settings.resolved_artifact_location is None


def test_empty_variables_mean_default(monkeypatch):
    monkeypatch.setenv("MLOPS_DATASET_PATH", "")
    monkeypatch.setenv("MLOPS_TRACKING_URI", " ")
    settings = Settings(_env_file=None)
    assert settings.dataset_path is None and settings.tracking_uri is None


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("MLOPS_GATE_METRIC", "speed", "gate_metric"),
        ("MLOPS_CANDIDATES", "svm", "candidates"),
        ("MLOPS_TEST_SIZE", "1.5", "test_size"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(monkeypatch, variable, value, field):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None)


def test_a_file_variable_sets_the_setting_and_wins_over_the_inline_one(monkeypatch, tmp_path):
    secret = tmp_path / "monitoring_db_url"
    secret.write_text("postgresql+psycopg2://mlops:s3cret@db:5432/monitoring\n")
    monkeypatch.setenv("MLOPS_MONITORING_DB_URL", "postgresql+psycopg2://mlops:mlops-dev-only@db/m")
    monkeypatch.setenv("MLOPS_MONITORING_DB_URL_FILE", str(secret))
    settings = Settings(_env_file=None)
    assert settings.monitoring_db_url == "postgresql+psycopg2://mlops:s3cret@db:5432/monitoring"


def test_a_missing_secret_file_is_an_error_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_API_KEYS_FILE", str(tmp_path / "api_keys"))
    with pytest.raises(ValueError, match="MLOPS_API_KEYS_FILE"):
        Settings(_env_file=None)


def test_an_empty_secret_file_means_not_set(monkeypatch, tmp_path):
    """An optional secret, such as the alert webhook, that a VM does not use."""
    (tmp_path / "webhook").write_text("\n")
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL_FILE", str(tmp_path / "webhook"))
    assert Settings(_env_file=None).alert_webhook_url is None


def test_production_refuses_a_development_default_secret_naming_it(monkeypatch):
    monkeypatch.setenv("MLOPS_ENVIRONMENT", "production")
    monkeypatch.setenv(
        "MLOPS_MONITORING_DB_URL", "postgresql+psycopg2://mlops:mlops-dev-only@postgres/monitoring"
    )
    with pytest.raises(ValidationError, match="MLOPS_MONITORING_DB_URL"):
        Settings(_env_file=None)
    monkeypatch.setenv(
        "MLOPS_MONITORING_DB_URL", "postgresql+psycopg2://mlops:s3cret@postgres/monitoring"
    )
    with pytest.raises(ValidationError, match="set MLOPS_TRACKING_URI"):
        Settings(_env_file=None)  # production is not embedded
    monkeypatch.setenv("MLOPS_TRACKING_URI", "http://mlflow:5000/mlflow")
    assert Settings(_env_file=None).environment == "production"
