"""The `mlops` command as a person uses it: help, train, models, promote, rollback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mlops_stack
from mlops_stack.cli import app
from tests.support.paths import REPO
from tests.support.tables import mixed_table

runner = CliRunner(env={"COLUMNS": "220"})  # a wide terminal: table rows stay on one line


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    # Prefect binds its console handler to the stderr of the moment; CliRunner's is closed now.
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)
    return result


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "models",
        "promote",
        "rollback",
        "monitor",
        "retrain",
        "simulate",
        "log-writer",
        "serve",
    ],
)
def test_every_command_explains_itself(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage: mlops " + command in result.output, result.output
    assert len(result.output.splitlines()) > 5


def test_console_script_is_installed_and_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "mlops_stack.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("train", "models", "promote", "rollback"):
        assert command in out


def test_train_models_promote_rollback(stack):
    stack(candidates="logistic_regression")
    first = invoke("train")
    assert first.exit_code == 0, first.output
    assert "v1 promoted to champion: first model" in first.output
    second = invoke("train")
    assert "v2 kept as challenger: tie" in second.output
    assert "champion is now v1" in second.output

    listing = invoke("models")
    assert listing.exit_code == 0
    lines = {
        line.split("│")[1].strip(): line
        for line in listing.output.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    }
    assert "champion" in lines["1"] and "challenger" in lines["2"]
    assert "kept-as-challenger" in lines["2"] and "promoted" in lines["1"]
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["models"]).output
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert not any(line.startswith(("│", "┃")) for line in narrow.splitlines()), narrow
    # one block per version, newest first: roles and model, metrics, the decision and why
    blocks = re.findall(r"^v(\d+) +(\S.*)\n +(accuracy .*)\n +(\S.*)$", narrow, re.MULTILINE)
    assert [b[0] for b in blocks] == ["2", "1"], narrow
    assert blocks[0][1].startswith("challenger; classification, ")
    assert blocks[1][1].startswith("champion; classification, ")
    assert re.fullmatch(r"accuracy \d\.\d{4}; f1 \d\.\d{4}; roc_auc \d\.\d{4} *", blocks[0][2])
    assert blocks[0][3].startswith("kept-as-challenger, 20") and " UTC: tie" in blocks[0][3]
    assert blocks[1][3].startswith("promoted, 20") and " UTC: first model" in blocks[1][3]

    promoted = invoke("promote", "2")
    assert promoted.exit_code == 0 and "v2 is champion (was v1)" in promoted.output
    assert "promoted-by-hand" in invoke("models").output
    rolled = invoke("rollback")
    assert rolled.exit_code == 0 and "v2 -> v1" in rolled.output
    again = invoke("rollback")
    assert again.exit_code == 1 and "nothing to roll back to" in again.output


def test_promote_unknown_version_is_a_clear_error(stack):
    stack(candidates="logistic_regression")
    invoke("train")
    result = invoke("promote", "7")
    assert result.exit_code == 1
    assert "has no version 7" in result.output


def test_models_on_an_empty_registry_says_what_to_do(stack):
    settings = stack()
    result = invoke("models")
    assert result.exit_code == 0 and "run `mlops train` first" in result.output
    # a read: listing versions creates no experiment as a side effect
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.resolved_tracking_uri)
    assert client.get_experiment_by_name(settings.experiment_name) is None


def test_train_on_bad_table_exits_2_naming_each_column(stack, tmp_path):
    frame = mixed_table()
    frame.loc[0, "age"] = np.inf  # an empty or constant column would be dropped, not refused
    frame.loc[:3, "churn"] = None
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    result = invoke("train", "--data", str(path), "--target", "churn")
    assert result.exit_code == 2
    assert "column 'age': column holds infinite values" in result.output
    assert "column 'churn': target has 4 missing value(s)" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_is_reported_by_name(stack, monkeypatch):
    monkeypatch.setenv("MLOPS_GATE_METRIC", "speed")
    from mlops_stack.settings import get_settings

    get_settings.cache_clear()
    result = invoke("models")
    assert result.exit_code == 2
    assert "MLOPS_GATE_METRIC: Value error, must be one of" in result.output
    assert "Traceback" not in result.output


def test_serve_api_in_its_own_process_answers_the_readme_examples(stack, tmp_path):
    """`mlops serve api` as a user starts it: a fresh process that only has the settings."""
    import os

    import httpx

    from mlops_stack.flows.train import train_flow
    from tests.support.servers import free_port, server_process

    settings = stack(candidates="logistic_regression")
    train_flow()
    port = free_port()
    env = {**os.environ, "MLOPS_DATA_DIR": str(settings.data_dir.resolve())}
    command = [sys.executable, "-m", "mlops_stack.cli", "serve", "api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    examples = REPO / "examples"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    log = tmp_path / "serve.log"
    with server_process(
        command, log, ready, "`mlops serve api` to be ready", env=env, cwd=tmp_path
    ):
        headers = {"Content-Type": "application/json", "X-Request-ID": "demo-1"}
        single = httpx.post(
            f"{base}/predict", headers=headers, content=(examples / "predict.json").read_bytes()
        )
        assert single.status_code == 200 and single.json()["prediction"] == 0
        assert single.json()["request_id"] == "demo-1"
        batch = httpx.post(
            f"{base}/predict/batch",
            headers=headers,
            content=(examples / "predict_batch.json").read_bytes(),
        )
        assert [p["prediction"] for p in batch.json()["predictions"]] == [0, 1, 1]
        feedback = httpx.post(f"{base}/feedback", json={"request_id": "demo-1", "label": 0})
        assert feedback.json() == {"accepted": 1, "unknown": []}
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_monitor_prints_the_estimate_next_to_the_realised_figure_on_the_same_rows():
    from mlops_stack.cli.monitoring import _estimate_line

    estimated = {
        "accuracy": 0.968,
        "f1": 0.975,
        "rows": 400,
        "labelled_accuracy": 0.931,
        "labelled_f1": 0.94,
        "labelled_rows": 91,
    }
    line = _estimate_line(estimated, {"accuracy": 0.945, "f1": 0.95})
    assert "accuracy 0.968, f1 0.975 over 400 rows" in line
    assert "on the 91 labelled rows: estimated accuracy 0.931, realised 0.945" in line
    # before labels arrive: the estimate alone
    unlabelled = _estimate_line({"accuracy": 0.9, "f1": 0.8, "rows": 50}, {})
    assert unlabelled.endswith("over 50 rows")


def _embedded(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_stack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_embedded_commands_run_their_flows_without_starting_a_prefect_server(stack, tmp_path):
    """`mlops train`, `monitor` and `retrain` as a user runs them without a stack: no Prefect
    API, so no temporary Prefect server either (the flows run in the command's process)."""
    stack(candidates="logistic_regression")
    env = {k: v for k, v in os.environ.items() if not k.endswith("PREFECT_API_URL")}
    # Prefect may not start its temporary server: any use of its API would fail the command
    env |= {"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false", "COLUMNS": "80"}
    # the package under test, wherever the environment's install points
    package = str(Path(mlops_stack.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    prefect_home = Path(env["PREFECT_HOME"])

    train = _embedded(env, "train")
    assert train.returncode == 0, train.stderr[-3000:]
    assert "v1 promoted to champion: first model" in train.stdout
    monitor = _embedded(env, "monitor")
    assert monitor.returncode == 0, monitor.stderr[-3000:]
    assert "status: skipped - not enough data: 0 logged rows" in monitor.stdout
    retrain = _embedded(env, "retrain")
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    assert "retrain: skipped - not enough labelled rows: 0" in retrain.stdout

    logs = train.stderr + monitor.stderr + retrain.stderr
    for flow in ("train", "monitor", "retrain"):
        assert f"flow {flow} runs in this process without Prefect" in logs
    assert "temporary server" not in logs
    assert not list(prefect_home.glob("*.db")), "a Prefect server made its database"


def test_with_a_prefect_api_a_command_s_flow_is_a_prefect_run_with_its_tasks(stack):
    """The stack's way (the tests' Prefect server here): the same flow is orchestrated, its
    run and task runs recorded in Prefect, as its UI shows them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    stack()
    started = datetime.now(UTC)
    result = invoke("monitor")  # no champion yet: the run is a skip, quickly
    assert result.exit_code == 0 and "status: skipped - no champion yet" in result.output
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_filter=FlowFilter(name={"any_": ["monitor"]}),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        tasks = client.read_task_runs(  # sort and limit given: the server refuses nulls
            flow_run_filter=FlowRunFilter(id={"any_": [run.id]}),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=50,
        )
    assert run.state is not None and run.state.is_completed()
    assert run.start_time is not None and run.start_time >= started
    assert any(t.name.startswith("load_champion") for t in tasks), [t.name for t in tasks]
