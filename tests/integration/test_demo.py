"""`mlops demo` runs the whole loop to the end and shows the version change and why."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app
from tests.unit.test_simulate import houses


def test_demo_runs_the_loop_and_promotes_a_retrained_model(stack, tmp_path):
    stack()
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)  # CliRunner's stderr is closed now
    assert result.exit_code == 0, result.output
    out = result.output
    # every setting the demo changes, with its default, before anything runs
    settings = out.index("settings the demo changes")
    assert "MLOPS_MONITOR_WINDOW_ROWS=600 [default 5000]" in out
    assert "MLOPS_RETRAIN_ENABLED=true [default false]" in out
    assert "MLOPS_RELOAD_POLL_SECONDS=1 [default 10]" in out
    assert "MLOPS_RETRAIN_MIN_LABELLED=100" in out and "MLOPS_MONITOR_MIN_ROWS=200" in out
    # the mechanism, stated before any traffic: a moved boundary, not flipped labels
    mechanism = out.index("scenario: a clean phase, then a concept shift alone")
    assert re.search(r"the boundary on 'worst concave points' moved from 0\.1417 to 0\.2074", out)
    assert settings < mechanism < out.index("1. train") < out.index("3. clean traffic")
    assert "monitor: ok" in out
    changed = re.search(r"600 fresh rows, (\d+) with labels, (\d+) of them changed by", out)
    assert changed and 10 <= int(changed[2]) < int(changed[1]), out
    assert re.search(r"monitor: degraded - quality degraded: accuracy 0\.[0-8]", out), out
    promoted = out.index("retrain: promoted - better (roc_auc")
    assert "vs champion v1" in out
    # claimed only once a /predict answer named it, after the promotion
    answered = re.search(r"the predictor answers with v2: a /predict answer named it [\d.]+s", out)
    assert answered and answered.start() > promoted, out
    assert "champion: v1 -> v2" in out
    assert "drift report: file://" in out


def test_demo_runs_the_loop_on_the_built_in_regression_table(stack, tmp_path):
    stack()
    result = _demo(["--dir", str(tmp_path / "demo"), "--task", "regression"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "the built-in diabetes table (442 rows, 10 columns besides 'target', regression)" in out
    assert re.search(r"holdout rmse \d+\.\d{3}", out), out
    assert re.search(r"3\. clean traffic: 600 fresh rows, \d+ with their true labels", out), out
    assert "monitor: ok" in out, out
    assert "the effect of 'bmi' on the target grew" in out
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
    assert "the effect of 'size_m2' on the target grew" in out  # the most related feature
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
    assert re.search(r"concept shift alone .*: the boundary on '[a-z_/]+' moved", out), out
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


def test_the_scenario_moves_the_concept_on_the_feature_most_related_to_the_label():
    from mlops_stack.data import Dataset
    from mlops_stack.demo import Scenario, phase_rows
    from mlops_stack.names import Task
    from mlops_stack.settings import Settings

    frame = houses()
    assert Scenario.choose(Dataset(frame, "price", "t"), Task.REGRESSION).feature == "size_m2"
    rng = np.random.default_rng(0)
    x, noise = rng.normal(0, 1, 500), rng.normal(0, 1, 500)
    table = pd.DataFrame({"noise": noise, "x": x, "y": np.where(x > 0.3, "yes", "no")})
    scenario = Scenario.choose(Dataset(table, "y", "t"), Task.CLASSIFICATION)
    assert scenario.feature == "x"
    concept = scenario.concept(Dataset(table, "y", "t"))
    assert concept.threshold == pytest.approx(0.3, abs=0.05) and concept.high_class == "yes"
    # enough rows that the labelled ones (the holdout's share) clear the retrain's minimum
    assert phase_rows(Settings(_env_file=None)) == 600  # 1.2 x 100 labels / 0.2
    assert phase_rows(Settings(_env_file=None, retrain_min_labelled=10)) == 200  # min rows
