"""The compose stack scaled out (infrastructure/ci/compose-e2e.sh, `table` stage).

The stage boots the dev stack with `--scale api=3 --scale worker=2` on scikit-learn's diabetes
table (tests/e2e_table says how) and a monitor interval of one minute, runs tests/e2e_table,
then these. MLOPS_E2E_URL is nginx's address, MLOPS_E2E_MODEL the configured model name,
COMPOSE_PROJECT_NAME the stack for `docker compose`. Without them the tests fail, naming what
is missing; they never skip.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from sklearn.datasets import load_diabetes

# nginx's address, a client of it, the Prefect override and the model name: as for the table
from tests.e2e.conftest import base_url, http, prefect_server  # noqa: F401
from tests.e2e_table.conftest import model_name  # noqa: F401

REPLICAS = 3
"""api containers the stage starts (`--scale api=3`)."""
WORKERS = 2
"""worker containers the stage starts (`--scale worker=2`)."""


@pytest.fixture(scope="session")
def body() -> dict[str, Any]:
    """A row of the table the stage serves, as /api/predict takes it."""
    table = load_diabetes(as_frame=True).frame.drop(columns="target")
    return {"features": {k: float(v) for k, v in table.iloc[0].items()}}


@pytest.fixture(scope="session")
def prefix() -> str:
    """This session's request ids start with it: its rows, whatever else the stack holds."""
    if not os.environ.get("COMPOSE_PROJECT_NAME"):
        pytest.fail("COMPOSE_PROJECT_NAME is not set: compose-e2e.sh sets it for the stage")
    return f"scale-{uuid.uuid4().hex[:8]}"
