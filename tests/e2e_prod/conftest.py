"""The prod override's end-to-end tests: docker-compose.prod.yml as a VM runs it.

Run by `infrastructure/ci/compose-e2e.sh` after it booted the prod stack (self-signed TLS,
secrets from `infrastructure/prod/init-secrets.sh`). MLOPS_PROD_URL is the https address,
MLOPS_PROD_HTTP_URL the plain http one, MLOPS_SECRETS_DIR the secrets; COMPOSE_FILE and
COMPOSE_PROJECT_NAME name the stack for `docker compose exec`. Without them the tests fail,
naming what is missing; they never skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: infrastructure/ci/compose-e2e.sh sets it for the prod stage"
        )
    return value


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """Overrides the unit tests' temporary Prefect: these tests talk to the stack's own."""
    yield


@pytest.fixture(scope="session")
def https_url() -> str:
    return _required("MLOPS_PROD_URL").rstrip("/")


@pytest.fixture(scope="session")
def http_url() -> str:
    return _required("MLOPS_PROD_HTTP_URL").rstrip("/")


@pytest.fixture(scope="session")
def secrets_dir() -> Path:
    return REPO / _required("MLOPS_SECRETS_DIR")


@pytest.fixture(scope="session")
def api_key(secrets_dir: Path) -> str:
    return (secrets_dir / "api_key.txt").read_text().strip()


@pytest.fixture(scope="session")
def ui_login(secrets_dir: Path) -> tuple[str, str]:
    return ("admin", (secrets_dir / "ui_password.txt").read_text().strip())


@pytest.fixture(scope="session")
def https(https_url: str) -> Iterator[httpx.Client]:
    """A client of the https front door; the certificate is the self-signed one made for CI."""
    with httpx.Client(base_url=https_url, verify=False, timeout=60) as client:
        yield client


def compose(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """`docker compose ARGS` on the prod stack (COMPOSE_FILE/COMPOSE_PROJECT_NAME from CI)."""
    _required("COMPOSE_FILE")
    return subprocess.run(
        ["docker", "compose", *args],
        cwd=REPO, capture_output=True, text=True, check=check, timeout=timeout,
    )  # fmt: skip


def psql(query: str, database: str = "monitoring") -> str:
    user = os.environ.get("POSTGRES_USER", "mlops")
    done = compose("exec", "-T", "postgres", "psql", "-U", user, "-d", database, "-tAc", query)
    return done.stdout.strip()
