"""The `mlops` command as a person uses it: help, train, models, promote, rollback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app

from .conftest import mixed_table

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
    import socket
    from pathlib import Path

    import httpx

    from mlops_stack.flows.train import train_flow

    from .servers import wait_for

    settings = stack(candidates="logistic_regression")
    train_flow()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLOPS_DATA_DIR": str(settings.data_dir.resolve())}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops_stack.cli", "serve", "api", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    examples = Path(__file__).resolve().parents[1] / "examples"

    def ready() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(f"{base}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 120, "`mlops serve api` to be ready")
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
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_monitor_prints_the_estimate_next_to_the_realised_figure_on_the_same_rows():
    from mlops_stack.cli import _estimate_line

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
