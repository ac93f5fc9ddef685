"""``.env.example``: every variable the stack reads, rendered from the code that reads it.

Two kinds: the variables the compose files interpolate themselves (``COMPOSE_VARIABLES``,
``COMPOSE_SETTING_DEFAULTS``, ``PROD_SETTING_DEFAULTS``; tests/unit/test_settings.py holds them to
the ``${...}`` in both files) and the ``MLOPS_*`` settings, from the fields of each section of
:class:`mlops_stack.settings.Settings` (``mlops_stack.settings.SECTIONS``), under a header each.
Regenerate with ``python -m mlops_stack.env_example > .env.example``.
"""

from __future__ import annotations

import textwrap

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mlops_stack.settings import SECTIONS, former_names, variable

ENV_EXAMPLE_HEADER = """\
# Every variable the stack reads, with its default. Copy to .env and uncomment what you change:
# `docker compose` reads .env for its own variables and passes it to the Python services;
# `mlops` commands read it from the working directory. The MLOPS_* defaults run everything
# embedded (MLflow on a SQLite file, state under MLOPS_DATA_DIR); docker-compose.yml sets the
# service URLs (tracking, databases, Redis, Prefect) itself.
"""


# Variables the compose files themselves read (interpolation), besides the MLOPS_* settings
# that their Python services read. A test holds this table to the ${...} in both files.
COMPOSE_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("MLOPS_HTTP_BIND", "127.0.0.1", "Address nginx publishes the stack on (0.0.0.0: the LAN)."),
    ("MLOPS_HTTP_PORT", "8080", "Port nginx publishes the stack on: http://<bind>:<port>/."),
    ("POSTGRES_USER", "mlops", "PostgreSQL user owning the mlflow, prefect, monitoring DBs."),
    (
        "POSTGRES_PASSWORD",
        "mlops-dev-only",
        "PostgreSQL password. The default is for a laptop only; the prod stack refuses it.",
    ),
    (
        "MLFLOW_ALLOWED_HOSTS",
        "mlflow:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        "Host headers MLflow answers; add the name you reach the stack by.",
    ),
    ("JUPYTER_TOKEN", "mlops-dev-only", "JupyterLab token (profile notebooks): /jupyter/?token=."),
    (
        "MLOPS_DATASETS_DIR",
        "./datasets",
        "Host directory of your tables, read-only at /datasets in the worker and JupyterLab.",
    ),
    (
        "MLOPS_ENV_FILE",
        ".env",
        "File of the MLOPS_* settings the Python services get (e.g. one file per table).",
    ),
    ("MLOPS_IMAGE", "mlops-stack:0.1.0", "Tag of the stack's Python image (built locally)."),
    ("MLOPS_JUPYTER_IMAGE", "mlops-stack-jupyter:0.1.0", "Tag of the JupyterLab image."),
    # the observability profile's Prometheus (infrastructure/prometheus/, docs/observability.md)
    (
        "MLOPS_PROMETHEUS_IMAGE",
        "mlops-stack-prometheus:0.1.0",
        "Tag of the Prometheus image, built from Debian's package (upstream: prom/prometheus).",
    ),
    ("MLOPS_PROMETHEUS_RETENTION", "15d", "How long Prometheus keeps its samples."),
    (
        "MLOPS_SLO_AVAILABILITY",
        "0.995",
        "Predictor SLO: share of /predict and /predict/batch answers that are not 5xx.",
    ),
    (
        "MLOPS_SLO_LATENCY_SECONDS",
        "0.25",
        "Predictor SLO: p99 latency bound (s), a bucket bound of its histogram: 0.1, 0.25, 0.5...",
    ),
    # docker-compose.prod.yml only
    ("MLOPS_PUBLIC_BIND", "0.0.0.0", "Prod: address nginx publishes 80 and 443 on."),
    ("MLOPS_PUBLIC_HTTP_PORT", "80", "Prod: host port of plain HTTP (redirects to HTTPS)."),
    ("MLOPS_PUBLIC_HTTPS_PORT", "443", "Prod: host port of HTTPS."),
    (
        "MLOPS_SECRETS_DIR",
        "./secrets",
        "Prod: directory of the secret files (infrastructure/prod/init-secrets.sh).",
    ),
    ("MLOPS_BACKUP_KEEP", "7", "Prod: backups kept (the newest)."),
    ("MLOPS_BACKUP_INTERVAL_HOURS", "24", "Prod: hours between two scheduled backups."),
    ("MLOPS_BACKUP_IMAGE", "mlops-stack-backup:0.1.0", "Prod: tag of the backup image."),
    (
        "MLOPS_API_REPLICAS",
        "2",
        "Prod: predictor containers behind nginx (infrastructure/prod/rolling-update.sh).",
    ),
)

# Settings that docker-compose.prod.yml gives a production default of its own (a value in
# .env still wins): ${MLOPS_X:-prod default}.
PROD_SETTING_DEFAULTS: dict[str, str] = {
    "MLOPS_API_WORKERS": "1",  # per replica: the replicas are the parallelism
    "MLOPS_RATE_LIMIT_PER_MINUTE": "600",
}

# Settings that docker-compose.yml gives a default of its own (a value in .env still wins):
# ${MLOPS_X:-stack default}. Retraining closes the loop in the stack; the api uses the cores.
COMPOSE_SETTING_DEFAULTS: dict[str, str] = {
    "MLOPS_RETRAIN_ENABLED": "true",
    "MLOPS_API_WORKERS": "0",  # the dev api: one worker per CPU the container may use
}


def render_env_example() -> str:
    """``.env.example`` from the fields themselves, so the documentation cannot drift: the
    compose variables, then the settings section by section (``SECTIONS``), each under its
    class's one-line summary.

    Regenerate with ``python -m mlops_stack.env_example > .env.example``.
    """
    lines = [ENV_EXAMPLE_HEADER, "# === docker compose (the compose files read these) ===", ""]
    for name, default, description in COMPOSE_VARIABLES:
        lines += [f"# {description}", f"# {name}={default}", ""]
    lines += ["# === settings of the stack's Python services (MLOPS_*), by section ===", ""]
    for section in SECTIONS:
        lines += [f"# --- {section_title(section)} ---", ""]
        for name, field in section.model_fields.items():
            lines += _setting_lines(name, field)
    return "\n".join(lines)


def section_title(section: type[BaseModel]) -> str:
    """A section's header: the first line of its class's docstring."""
    return (section.__doc__ or section.__name__).strip().splitlines()[0].rstrip(".")


def shown_default(field: FieldInfo) -> str:
    """A field's default as a variable would set it: empty for none, booleans in lower case."""
    default = field.default
    if default is None:
        return ""
    return str(default).lower() if isinstance(default, bool) else str(default)


def _setting_lines(name: str, field: FieldInfo) -> list[str]:
    """One setting: its description (and the compose files' defaults, the variables it was
    read from before a rename), then its variable, commented out, with its default."""
    description = field.description or ""
    stack_default = COMPOSE_SETTING_DEFAULTS.get(variable(name))
    if stack_default is not None:
        description += f" docker-compose.yml's default: {stack_default}."
    prod_default = PROD_SETTING_DEFAULTS.get(variable(name))
    if prod_default is not None:
        description += f" docker-compose.prod.yml's default: {prod_default}."
    former = former_names(name, field)
    if former:
        description += (
            f" Formerly {' and '.join(former)}, still read; {variable(name)} wins when both "
            "are set."
        )
    lines = [f"# {line}" for line in textwrap.wrap(description, 96)]
    return [*lines, f"# {variable(name)}={shown_default(field)}", ""]


if __name__ == "__main__":
    print(render_env_example(), end="")
