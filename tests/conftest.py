"""Shared fixtures: an isolated embedded stack per test, one Prefect test server per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_stack.settings import get_settings

# Prefect's test server must not try to phone home from a machine without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session", autouse=True)
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

    configure()
    yield configure
    get_settings.cache_clear()


def xor_table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table a linear model cannot learn (label = sign of x1 * x2) but trees can."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, rows))
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": x3, "label": (x1 * x2 > 0).astype(int)})


def mixed_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values in both kinds."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    income = rng.lognormal(10, 0.5, rows)
    city = rng.choice(["paris", "lyon", "nantes", "lille"], rows)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    score = (age - 50) / 15 + (plan == "premium") * 1.5 - (city == "lille") * 1.0
    churn = np.where(score + rng.normal(0, 0.7, rows) > 0, "yes", "no")
    frame = pd.DataFrame({"age": age, "income": income, "city": city, "plan": plan, "churn": churn})
    frame.loc[rng.choice(rows, 25, replace=False), "income"] = np.nan
    frame.loc[rng.choice(rows, 20, replace=False), "city"] = None
    return frame


# --- the real PostgreSQL and Redis of infrastructure/ci/services.sh ----------------------------


@pytest.fixture(scope="session")
def services():
    """The test servers; fails (never skips) when `infrastructure/ci/services.sh` did not run.

    Session-scoped, so it reads ``MLOPS_TEST_*`` before ``stack`` clears the ``MLOPS_*`` variables.
    """
    from .services import from_environment

    return from_environment()


@pytest.fixture
def postgres_url(services):
    """The URL of a fresh, empty PostgreSQL database of this test's own."""
    from .services import temporary_database

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
