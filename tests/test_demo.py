"""`mlops demo` runs the whole loop to the end and shows the version change and why."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app

from .test_simulate import houses


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


def test_demo_runs_the_loop_on_the_built_in_regression_table(stack, tmp_path):
    stack()
    result = _demo(["--dir", str(tmp_path / "demo"), "--task", "regression"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "the built-in diabetes table (442 rows, 10 columns besides 'target', regression)" in out
    assert re.search(r"holdout rmse \d+\.\d{3}", out), out
    # 89 held-out rows are below the demo monitor's 100: topped up, not repeated
    assert "89 held-out rows with their true labels, 11 unlabelled rows of the table" in out
    assert "monitor: ok" in out
    assert "labels follow a changed relationship (+2 std of the target)" in out
    assert re.search(r"monitor: (drift|degraded) - ", out), out
    assert re.search(r"retrain: promoted - better \(rmse [\d.]+ vs champion v1", out), out
    assert "rmse (labels)" in out and "champion: v1 -> v2" in out


def test_demo_runs_the_loop_on_your_own_regression_table(stack, tmp_path):
    stack(candidates="linear,hist_gradient_boosting")
    table = tmp_path / "houses.csv"
    houses().to_csv(table, index=False)
    result = _demo(["--dir", str(tmp_path / "demo"), "--data", str(table), "--target", "price"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{table} (600 rows, 4 columns besides 'price', regression)" in out
    assert "120 held-out rows with their true labels" in out and "unlabelled" not in out
    assert "3 features +3 std" in out  # the numeric ones; the district stays categorical
    assert re.search(r"retrain: promoted - better \(rmse", out), out
    assert "champion: v1 -> v2" in out


def test_demo_runs_the_loop_on_a_multiclass_table_with_class_names(stack, tmp_path):
    """scikit-learn's wine table with its cultivars by name: three string classes, through
    train, serve, labelled traffic, monitor, retrain and the gate."""
    from sklearn.datasets import load_wine

    stack(candidates="linear,hist_gradient_boosting")
    wine = load_wine(as_frame=True)
    names = dict(enumerate(["barolo", "grignolino", "barbera"]))
    frame = wine.data.assign(cultivar=wine.target.map(names))
    table = tmp_path / "wine.csv"
    frame.to_csv(table, index=False)
    result = _demo(["--dir", str(tmp_path / "demo"), "--data", str(table), "--target", "cultivar"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{table} (178 rows, 13 columns besides 'cultivar', classification)" in out
    assert "36 held-out rows with their true labels" in out
    assert "monitor: ok" in out
    assert re.search(r"monitor: (drift|degraded) - ", out), out
    assert re.search(r"retrain: promoted - better \(roc_auc [\d.]+ vs champion v1", out), out
    assert "champion: v1 -> v2" in out


def _demo(args: list[str]):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["demo", *args])
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)  # CliRunner's stderr is closed now
    return result


def test_demo_refuses_a_directory_that_exists(stack, tmp_path):
    stack()
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "exists" in result.output


def test_demo_refuses_what_it_cannot_run_on_naming_it(stack, tmp_path):
    stack()
    runner = CliRunner()
    where = ["--dir", str(tmp_path / "demo")]
    result = runner.invoke(app, ["demo", *where, "--target", "price"])
    assert result.exit_code == 2 and "--target names a column of --data" in result.output
    result = runner.invoke(app, ["demo", *where, "--task", "clustering"])
    assert result.exit_code == 2 and "use classification or regression" in result.output
    result = runner.invoke(app, ["demo", *where, "--data", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "dataset file not found" in result.output
    table = tmp_path / "houses.csv"
    houses().to_csv(table, index=False)
    result = runner.invoke(app, ["demo", *where, "--data", str(table), "--target", "cost"])
    assert result.exit_code == 2 and "'cost'" in result.output and "price" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "demo").exists()  # refused before anything was made


def test_the_second_batch_labels_follow_a_changed_relationship():
    from mlops_stack.demo import LABEL_SHIFT_STDS, _changed
    from mlops_stack.names import Task
    from mlops_stack.training import Split

    def split(y_train: list) -> Split:
        frame = pd.DataFrame({"x": range(len(y_train))})
        return Split(frame, frame, pd.Series(y_train), pd.Series(y_train))

    sent = pd.Series(["b", None, "c", "a"], dtype=object)
    changed = _changed(sent, split(["a", "b", "c", "a"]), Task.CLASSIFICATION)
    assert list(changed) == ["c", None, "a", "b"]  # each class the next; no label stays none
    binary = _changed(pd.Series([0, 1, 1], dtype=object), split([0, 1, 0, 1]), Task.CLASSIFICATION)
    assert list(binary) == [1, 0, 0]  # two classes: flipped
    y_train = [10.0, 20.0, 30.0, 40.0]
    numbers = _changed(pd.Series([15.0, None], dtype=object), split(y_train), Task.REGRESSION)
    assert numbers[0] == pytest.approx(15.0 + LABEL_SHIFT_STDS * pd.Series(y_train).std())
    assert numbers[1] is None
