"""`mlops demo` runs the whole loop to the end and shows the version change and why."""

from __future__ import annotations

from typer.testing import CliRunner

from mlops_stack.cli import app


def test_demo_runs_the_loop_and_promotes_a_retrained_model(stack, tmp_path):
    stack()
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)  # CliRunner's stderr is closed now
    assert result.exit_code == 0, result.output
    out = result.output
    assert "monitor: ok" in out
    assert "retrain: promoted - better (roc_auc" in out and "vs champion v1" in out
    assert "the predictor picks up v2 by itself" in out
    assert "champion: v1 -> v2" in out
    assert "drift report: file://" in out


def test_demo_refuses_a_directory_that_exists(stack, tmp_path):
    stack()
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "exists" in result.output
