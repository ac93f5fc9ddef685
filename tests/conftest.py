"""Shared fixtures, and the two tiers of the test tree.

The tier of a test is where its file lives (README, "Test it"):

- ``tests/unit/``: nothing but the virtual environment: no server process (no PostgreSQL,
  Redis, Prefect, browser or kustomize). ``pytest tests/unit`` (or ``-m "not stack"``) runs them
  in well under a minute. A unit test that asks for a server fixture fails at collection.
- ``tests/integration/``: the real servers ``scripts/test`` installs and starts. Every test there
  carries the ``stack`` marker and gets the session's temporary Prefect API.
- ``tests/e2e*``: the Docker stack through nginx, run by ``infrastructure/ci/compose-e2e.sh``.

Both trees mirror ``src/mlops_stack``: the tests of ``serving/batcher.py`` are in
``tests/unit/serving/test_batcher.py``. Helpers shared by several test modules are in
``tests/support/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlops_stack.settings import get_settings
from tests.support.servers import QuietHandler, loopback_http

# Prefect's test server must not try to phone home from a machine without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

TESTS = Path(__file__).resolve().parent
INTEGRATION = TESTS / "integration"
UNIT = TESTS / "unit"
# Fixtures that are servers, or reach the test servers of infrastructure/ci/services.sh.
SERVER_FIXTURES = {"prefect_server", "services", "postgres_url", "stream_name"}


def _stack_deselected(config: pytest.Config) -> bool:
    """True when ``-m`` leaves out every ``stack`` test (``-m "not stack"``)."""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
        # a stack test carries the stack marker and whatever markers it has of its own:
        # only an expression false for {stack} with no other marker rules them all out
        return not expression.evaluate(lambda name, **kwargs: name == "stack")
    except Exception:  # an expression or a pytest this does not understand: collect all
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``-m "not stack"`` does not even import the integration tree (mlflow, Prefect, ...)."""
    if collection_path == INTEGRATION and _stack_deselected(config):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tree ``stack`` and give each of its tests the session's Prefect API;
    refuse a server fixture in the unit tree.

    ``prefect_server`` goes first among the test's fixtures, so it is up before any module
    fixture of the test runs a flow; the unit tier never starts it.
    """
    for item in items:
        path = Path(str(item.path))
        fixturenames = getattr(item, "fixturenames", None)
        if path.is_relative_to(UNIT):
            servers = SERVER_FIXTURES & set(fixturenames or ())
            if servers:
                raise pytest.UsageError(
                    f"{item.nodeid} is a unit test but uses {', '.join(sorted(servers))}: "
                    "move it to tests/integration/"
                )
            continue
        if not path.is_relative_to(INTEGRATION):
            continue
        item.add_marker(pytest.mark.stack)
        if fixturenames is not None and "prefect_server" not in fixturenames:
            item.fixturenames = ["prefect_server", *fixturenames]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for the whole session (starting one costs several seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Embedded settings whose MLflow DB and artifacts live in this test's own directory.

    Yields a function that sets more ``MLOPS_*`` variables and returns fresh settings.
    """
    for key in list(os.environ):
        if key.startswith("MLOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "mlops-data"))
    # what `mlops` commands export for Prefect, so that they do not leak between tests
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("MLOPS_LATENCY_SAMPLES", "20")
    monkeypatch.chdir(tmp_path)

    def configure(**env: str):
        for key, value in env.items():
            monkeypatch.setenv(f"MLOPS_{key.upper()}", str(value))
        get_settings.cache_clear()
        return get_settings()

    # a CLI command run in-process installs its stack for the process: not for the next test
    from mlops_stack.stack import install  # here: it imports MLflow, which unit tests skip

    install(None)
    configure()
    yield configure
    install(None)
    get_settings.cache_clear()


# --- the real PostgreSQL and Redis of infrastructure/ci/services.sh ----------------------------


@pytest.fixture(scope="session")
def services():
    """The test servers; fails (never skips) when `infrastructure/ci/services.sh` did not run.

    Session-scoped, so it reads ``MLOPS_TEST_*`` before ``stack`` clears the ``MLOPS_*`` variables.
    """
    from tests.support.services import from_environment

    return from_environment()


@pytest.fixture
def postgres_url(services):
    """The URL of a fresh, empty PostgreSQL database of this test's own."""
    from tests.support.services import temporary_database

    with temporary_database(services.postgres_url) as url:
        yield url


@pytest.fixture
def stream_name(services):
    """A Redis stream name of this test's own on the test server, deleted afterwards."""
    import uuid

    import redis

    name = f"test:predictions:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(services.redis_url)
    try:
        client.delete(name, f"{name}:dead")
    except redis.RedisError:
        pass  # Redis unreachable: the key stays, harmless under its unique name
    finally:
        client.close()


@pytest.fixture
def webhook():
    """A real HTTP server on loopback that records what is POSTed to it."""
    received: list[dict] = []

    class Handler(QuietHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

    with loopback_http(Handler) as url:
        yield f"{url}/hook", received


@pytest.fixture
def prometheus_replay():
    """A loopback HTTP server answering /prometheus/api/v1/query, /alerts and /targets with
    the recorded answers of a real Prometheus (tests/support/prometheus.py). Yields its base
    URL and the replay."""
    from tests.support.prometheus import replaying

    with replaying() as served:
        yield served
