"""Prefect's own CLI works against a Prefect server of this dependency set.

With FastAPI 0.151 and later, Prefect's server answered its own CLI's list commands with 422
(docs/dependencies.md): the pinned set must keep `prefect deployment ls`, `flow-run ls`,
`work-pool ls`, `flow-run inspect` and `flow-run cancel` working. The compose stage runs the
same commands in the worker container (tests/e2e/test_prefect_cli.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support import prefect_cli as cli


def _run_against(api_url: str, home: Path) -> cli.Run:
    """Runs the venv's `prefect` command against ``api_url``, as a user in a shell would."""
    env = {**os.environ, **cli.ENV, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}
    executable = Path(sys.executable).parent / "prefect"

    def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert args[0] == "prefect"
        return subprocess.run(
            [str(executable), *args[1:]], env=env, capture_output=True, text=True, timeout=120
        )

    return run


def test_prefect_cli_lists_inspects_and_cancels(prefect_server, stack, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from mlops_stack import worker
    from mlops_stack.stack import current_stack

    stack(candidates="logistic_regression")
    for deployment in worker.deployments(current_stack()):
        deployment.apply()
    run = _run_against(str(PREFECT_API_URL.value()), tmp_path / "prefect-cli")

    table = cli.listed_deployments(run)
    assert all(name in table for name in cli.DEPLOYMENTS), table
    cli.ok(run, "work-pool", "ls")

    scheduled = cli.schedule(run, "monitor/monitor", start_in="1 hour")
    assert scheduled in {r["id"] for r in cli.flow_runs(run, "monitor", limit=200)}
    assert cli.state_of(run, scheduled) == "SCHEDULED"
    assert "cancel" in cli.cancel(run, scheduled)
    assert cli.state_of(run, scheduled) in {"CANCELLING", "CANCELLED"}
