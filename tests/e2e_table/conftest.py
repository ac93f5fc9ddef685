"""The compose stack booted on a user's own table (infrastructure/ci/compose-e2e.sh, `table`).

The script puts scikit-learn's diabetes table as a CSV in the directory compose mounts at
/datasets (MLOPS_DATASETS_DIR) and gives the services the lines README's "Your own data" puts
in .env (MLOPS_ENV_FILE); MLOPS_E2E_URL is nginx's address and MLOPS_E2E_MODEL the configured
model name. Without them the tests fail, naming what is missing; they never skip.
"""

from __future__ import annotations

import os

import pytest

# nginx's address, a client of it, and the Prefect override: as for the dev stack's tests
from tests.e2e.conftest import base_url, http, prefect_server  # noqa: F401


@pytest.fixture(scope="session")
def model_name() -> str:
    name = os.environ.get("MLOPS_E2E_MODEL")
    if not name:
        pytest.fail("MLOPS_E2E_MODEL is not set: compose-e2e.sh sets it for the table stage")
    return name
