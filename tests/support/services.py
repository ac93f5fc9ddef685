"""The real PostgreSQL and Redis that `infrastructure/ci/services.sh` runs, as tests use them.

The script prints (and writes to ``$SERVICES_DIR/env``) the ``MLOPS_TEST_*`` variables read here.
Tests that need the servers fail, not skip, without them: a skipped test in CI would hide that
the log path was never tested against a real database.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from tests.support.paths import REPO

SCRIPT = REPO / "infrastructure" / "ci" / "services.sh"
HOW_TO_START = (
    "start the test servers first: `infrastructure/ci/services.sh` (as root; it installs "
    "PostgreSQL and Redis if missing), then `source /tmp/mlops-test-services/env`"
)


@dataclass(frozen=True)
class Services:
    postgres_url: str
    redis_url: str
    services_dir: str

    def control(self, action: str) -> None:
        """Run a subcommand of the services script: pg-stop, pg-start, redis-stop, redis-start."""
        env = {**os.environ, "SERVICES_DIR": self.services_dir}
        result = subprocess.run(
            ["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"services.sh {action} failed:\n{result.stderr}"

    @contextmanager
    def outage(self, service: str) -> Iterator[Callable[[], None]]:
        """Stop ``service`` ('pg' or 'redis'); yields a function that starts it again.

        The service is started again on the way out whatever happens, so that one failing test
        does not take the servers away from the next ones.
        """
        self.control(f"{service}-stop")
        try:
            yield lambda: self.control(f"{service}-start")
        finally:
            self.control(f"{service}-start")


def from_environment() -> Services:
    names = ("MLOPS_TEST_POSTGRES_URL", "MLOPS_TEST_REDIS_URL")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not set: {HOW_TO_START}", pytrace=False)
    return Services(
        postgres_url=os.environ["MLOPS_TEST_POSTGRES_URL"],
        redis_url=os.environ["MLOPS_TEST_REDIS_URL"],
        services_dir=os.environ.get("MLOPS_TEST_SERVICES_DIR", "/tmp/mlops-test-services"),
    )


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the test server (its URL), dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    # NullPool: the server may be restarted by the test in between.
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
