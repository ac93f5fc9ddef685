"""Prefect's own CLI against a Prefect server, typed the way a user types it.

Shared by the local test (``tests/integration/flows/test_prefect_cli.py``: the session's Prefect
API) and the compose stage (``tests/e2e/test_prefect_cli.py``: inside the worker container),
so both run the same commands. ``run`` executes one ``prefect ...`` command line and returns
the finished process; tables are read at a width where nothing is cut (``COLUMNS``), and
whatever the CLI offers as ``--output json`` is read as JSON rather than scraped from a table.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

# wide enough that rich does not cut or wrap a table cell (an id is 36 characters)
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
DEPLOYMENTS = ("train/train", "monitor/monitor", "retrain/retrain")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_UUID = re.compile(r"UUID: ([0-9a-f-]{36})")


def ok(run: Run, *args: str) -> str:
    """``prefect <args>``, which must exit 0; its standard output."""
    done = run(["prefect", *args])
    assert done.returncode == 0, (
        f"prefect {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def as_json(run: Run, *args: str) -> Any:
    """``prefect <args> --output json``, parsed."""
    return json.loads(ok(run, *args, "--output", "json"))


def listed_deployments(run: Run) -> str:
    """``prefect deployment ls`` as a user reads it: the table."""
    return ok(run, "deployment", "ls")


def flow_runs(run: Run, flow: str, limit: int = 50) -> list[dict[str, Any]]:
    """``prefect flow-run ls --flow-name <flow>``: the flow's runs, newest first.

    Filtered by flow: the monitor's schedule alone fills the default 15 rows with future runs.
    """
    runs: list[dict[str, Any]] = as_json(
        run, "flow-run", "ls", "--flow-name", flow, "--limit", str(limit)
    )
    return runs


def state_of(run: Run, flow_run_id: str) -> str:
    """``prefect flow-run inspect <id>``: the run's state type (SCHEDULED, CANCELLED, ...)."""
    inspected = as_json(run, "flow-run", "inspect", flow_run_id)
    assert inspected["id"] == flow_run_id
    state: str = inspected["state"]["type"]
    return state


def schedule(run: Run, deployment: str, start_in: str = "1 hour") -> str:
    """``prefect deployment run <deployment> --start-in ...``: the new run's id.

    The command has no JSON output; it prints the run's ``UUID:`` on a line of its own.
    """
    out = ok(run, "deployment", "run", deployment, "--start-in", start_in)
    found = _UUID.search(out)
    assert found, f"no run id in the output of `prefect deployment run`:\n{out}"
    return found.group(1)


def cancel(run: Run, flow_run_id: str) -> str:
    """``prefect flow-run cancel <id>``: its message."""
    return ok(run, "flow-run", "cancel", flow_run_id)
