"""Prefect's own CLI in the worker container, against the stack's Prefect server.

What a user reaches for after `docker compose up`: `docker compose exec worker prefect ...`.
Every command runs in the compose project of the environment (COMPOSE_PROJECT_NAME, set by
infrastructure/ci/compose-e2e.sh), with the container's PREFECT_API_URL. The commands and
their parsing are shared with the local test (tests/support/prefect_cli.py,
tests/integration/flows/test_prefect_cli.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

import pytest

from tests.e2e.conftest import REPO
from tests.support import prefect_cli as cli
from tests.support.servers import wait_for


def _in_worker(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``docker compose exec -T worker <args>``, wide enough that no table cell is cut."""
    env_flags = [flag for key, value in cli.ENV.items() for flag in ("-e", f"{key}={value}")]
    return subprocess.run(
        ["docker", "compose", "exec", "-T", *env_flags, "worker", *args],
        cwd=REPO, env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bootstrap_run() -> dict:
    """The worker's bootstrap train run (compose-e2e.sh waited for the champion it made)."""
    runs = cli.flow_runs(_in_worker, "train")
    bootstrap = [r for r in runs if "bootstrap" in (r.get("tags") or [])]
    # one, ever: a restarted worker finds the champion (or the run in flight) and adds none
    assert len(bootstrap) == 1, f"`prefect flow-run ls --flow-name train` -> {runs}"
    return bootstrap[0]


def test_deployment_ls_lists_the_three_deployments():
    table = cli.listed_deployments(_in_worker)
    for name in cli.DEPLOYMENTS:
        assert name in table, table


def test_flow_run_ls_lists_the_bootstrap_train_run(bootstrap_run):
    assert bootstrap_run["deployment_id"], bootstrap_run  # started from the train deployment


def test_work_pool_ls_answers():
    # the worker serves its deployments without a work pool: the command must simply work
    cli.ok(_in_worker, "work-pool", "ls")


def test_flow_run_inspect_shows_the_bootstrap_run(bootstrap_run):
    assert cli.state_of(_in_worker, bootstrap_run["id"]) == "COMPLETED"


def test_a_scheduled_monitor_run_is_cancelled_by_the_cli():
    flow_run_id = cli.schedule(_in_worker, "monitor/monitor", start_in="1 hour")
    assert cli.state_of(_in_worker, flow_run_id) == "SCHEDULED"
    assert "cancel" in cli.cancel(_in_worker, flow_run_id)
    state = wait_for(
        lambda: (s := cli.state_of(_in_worker, flow_run_id)) in {"CANCELLING", "CANCELLED"} and s,
        60,
        "the cancelled run's state",
    )
    assert state in {"CANCELLING", "CANCELLED"}
