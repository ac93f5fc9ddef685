"""Regression and multiclass tables through the train flow, on real files, MLflow and Prefect.

scikit-learn's diabetes table (442 rows, a numeric target) and its wine table with the
cultivars' names as string labels are written to CSV files here, as a user would bring them.
"""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from typer.testing import CliRunner

from mlops_stack import training
from mlops_stack.cli import app
from mlops_stack.data import load_dataset
from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.gate import GateConfigError
from mlops_stack.names import Alias
from mlops_stack.registry import TASK_TAG, Registry, version_of
from mlops_stack.stack import current_stack

WINE_NAMES = {0: "barolo", 1: "grignolino", 2: "barbera"}


def _registry() -> Registry:
    return current_stack().registry


def _params(**overrides: object) -> TrainParameters:
    return TrainParameters.from_settings(current_stack().settings, **overrides)


def _aliases() -> dict[str, str]:
    return {
        str(alias): version_of(mv)
        for alias in (Alias.CHAMPION, Alias.CHALLENGER)
        if (mv := _registry().by_alias(alias))
    }


@pytest.fixture
def diabetes_csv(tmp_path):
    path = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    return path


@pytest.fixture
def wine_csv(tmp_path):
    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map(WINE_NAMES)
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def test_diabetes_table_trains_a_regression_champion(stack, diabetes_csv):
    settings = stack()  # every default candidate
    result = train_flow(_params(data_path=str(diabetes_csv), target="target"))
    assert result.task == "regression" and result.promoted
    assert result.reason.startswith("first model")
    # published figures for this table: RMSE ~ 55, R^2 ~ 0.4-0.5 for a linear model
    assert 40 < result.metrics["rmse"] < 65
    assert 30 < result.metrics["mae"] < result.metrics["rmse"]
    assert 0.2 < result.metrics["r2"] < 0.7
    assert "roc_auc" not in result.metrics

    client = _registry().client
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.tags[TASK_TAG] == "regression"
    assert champion.tags["gate.metric"] == "rmse"
    run = client.get_run(champion.run_id)
    assert run.data.metrics["rmse"] == pytest.approx(result.metrics["rmse"])
    # the three regressors under one parent; the winner has the lowest CV RMSE (positive)
    candidates = client.search_runs([run.info.experiment_id], "tags.`mlops.role` = 'candidate'")
    cv = {r.data.tags["mlops.candidate"]: r.data.metrics["cv_rmse"] for r in candidates}
    assert set(cv) == {"linear", "random_forest", "hist_gradient_boosting"}
    assert all(value > 0 for value in cv.values())
    assert result.candidate == min(cv, key=lambda name: cv[name])
    assert all(r.data.tags[TASK_TAG] == "regression" for r in candidates)

    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    rows = load_dataset(diabetes_csv, "target").features.head(5)
    predicted = np.asarray(model.predict(rows))
    assert predicted.dtype.kind == "f" and predicted.shape == (5,)
    assert np.all((predicted > 25) & (predicted < 346))  # within the target's range

    (row,) = _registry().describe()
    assert row.task == "regression" and list(row.metrics) == ["rmse", "mae", "r2"]
    info = _registry().champion_info()
    assert info is not None and info.task == "regression"
    assert info.metrics["rmse"] == pytest.approx(result.metrics["rmse"])
    # registered without saying the task (as a notebook would): read from the logged schema
    again = _registry().register(champion.source)
    assert _registry().version(again).tags[TASK_TAG] == "regression"


def test_the_direction_aware_gate_keeps_a_worse_regressor(stack, diabetes_csv, tmp_path):
    """v1 learns from 60 rows, v2 from the whole table (lower RMSE: promoted), v3 from the 60
    rows again (higher RMSE than the champion on v3's holdout: kept)."""
    few = tmp_path / "few.csv"
    pd.read_csv(diabetes_csv).head(60).to_csv(few, index=False)
    stack(candidates="linear")

    def train(path):
        return train_flow(_params(data_path=str(path), target="target"))

    v1, v2, v3 = train(few), train(diabetes_csv), train(few)
    assert v1.promoted and v2.promoted
    assert v2.reason.startswith("better (rmse") and v2.reason.endswith("lower is better)")
    assert not v3.promoted and v3.reason.startswith("worse (rmse")
    decided = _registry().version("3").tags
    assert float(decided["gate.candidate_score"]) > float(decided["gate.champion_score"])
    assert decided["gate.compared_with"] == "v2"
    assert _aliases() == {"champion": "2", "challenger": "3"}


def test_regression_bounds_refuse_a_model_worse_than_the_mean(stack, tmp_path):
    """A target of pure noise: no model beats predicting the mean, R^2 < 0 (MLOPS_GATE_MIN_R2=0)."""
    rng = np.random.default_rng(2)  # seeded: the holdout R^2 of this draw is -0.08
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    frame["y"] = rng.normal(100, 15, 300)
    path = tmp_path / "noise.csv"
    frame.to_csv(path, index=False)
    stack(candidates="linear")
    result = train_flow(_params(data_path=str(path), target="y"))
    assert result.metrics["r2"] < 0
    assert not result.promoted and "outside the absolute bounds: r2 -" in result.reason
    assert _aliases() == {"challenger": "1"}


def test_a_maximum_rmse_is_a_bound(stack, diabetes_csv):
    stack(candidates="linear", gate_max_rmse="20")
    result = train_flow(_params(data_path=str(diabetes_csv), target="target"))
    assert not result.promoted and "> 20.0000" in result.reason


def test_a_classification_gate_metric_on_a_regression_table_is_refused(stack, diabetes_csv):
    stack(candidates="linear", gate_metric="roc_auc")
    with pytest.raises(GateConfigError, match="does not apply to a regression model"):
        train_flow(_params(data_path=str(diabetes_csv), target="target"))
    assert _registry().versions() == []


def test_wine_with_string_class_names_trains_a_multiclass_champion(stack, wine_csv):
    settings = stack(candidates="linear,hist_gradient_boosting")
    result = train_flow(_params(data_path=str(wine_csv), target="cultivar"))
    assert result.task == "classification" and result.promoted
    assert result.metrics["roc_auc"] > 0.95 and result.metrics["f1"] > 0.9
    champion = _registry().client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.tags[TASK_TAG] == "classification"

    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    assert sorted(model.classes_) == sorted(WINE_NAMES.values())
    dataset = load_dataset(wine_csv, "cultivar")
    assert set(model.predict(dataset.features)) == set(WINE_NAMES.values())
    # macro F1 and one-vs-rest ROC AUC, recomputed from the logged model on the same rows
    by_hand = training.evaluate(model, dataset.features, dataset.labels)
    assert by_hand["accuracy"] > 0.95 and 0 < by_hand["f1"] <= 1
    cv = {"cv_roc_auc"} & set(_registry().client.get_run(champion.run_id).data.metrics)
    assert cv == {"cv_roc_auc"}


def test_a_champion_of_another_task_is_not_compared(stack, diabetes_csv):
    stack(candidates="linear")
    train_flow(_params(data_path=str(diabetes_csv), target="target"))
    result = train_flow()  # the built-in breast cancer table: a classifier
    assert not result.promoted
    assert "it is a regression model and this one is classification" in result.reason
    assert _aliases() == {"champion": "1", "challenger": "2"}


def test_models_lists_the_task_and_its_metrics_in_80_columns(stack, diabetes_csv):
    stack(candidates="linear")
    train_flow(_params(data_path=str(diabetes_csv), target="target"))
    train_flow()  # a classifier next to it
    output = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["models"]).output
    assert max(len(line) for line in output.splitlines()) <= 80, output
    assert "regression" in output and "classification" in output
    for metric in ("rmse", "mae", "r2", "roc_auc", "f1", "accuracy"):  # name and value unfolded
        assert re.search(rf"(^| ){metric} \d+\.\d{{4}}(;| *$)", output, re.MULTILINE), metric
    # one block per version, newest first, each with its own reason
    v2, v1 = (re.search(rf"^v{n}  ", output, re.MULTILINE) for n in (2, 1))
    assert v2 and v1 and v2.start() < v1.start(), output
    assert "champion v1 cannot be scored" in " ".join(output[v2.start() : v1.start()].split())


def test_train_command_refuses_a_gate_metric_of_the_other_task_before_training(stack, diabetes_csv):
    stack(gate_metric="f1")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["train", "--data", str(diabetes_csv), "--target", "target"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "MLOPS_GATE_METRIC=f1 does not apply to a regression model" in result.output
    assert "use auto or one of rmse, mae, r2" in result.output
    assert "Traceback" not in result.output
