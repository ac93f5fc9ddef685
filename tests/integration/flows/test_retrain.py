"""The loop closing: drift and degradation -> retrain on labelled rows -> gate -> promotion."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mlops_stack import modelstore
from mlops_stack.flows.monitor import monitor_flow
from mlops_stack.flows.retrain import retrain_flow
from mlops_stack.flows.train import train_flow
from mlops_stack.registry import version_of
from mlops_stack.stack import current_stack
from tests.support.regression import RegressionTraffic
from tests.support.traffic import Traffic


def test_concept_shift_retrains_and_promotes_then_cools_down(stack):
    """Shifted inputs whose labels follow a changed relationship: the champion mis-scores
    them, a retrain that sees half of the labelled rows wins on the other half."""
    settings = stack(
        candidates="logistic_regression", monitor_window_rows="300", monitor_min_rows="100"
    )
    train_flow()
    Traffic(settings).send(300, seed=21, shift=3.0, wrong_labels=True)
    settings = stack(
        retrain_enabled="true", candidates="logistic_regression,hist_gradient_boosting"
    )

    summary = monitor_flow()
    assert summary.status == "degraded", summary.reason
    retrain = summary.retrain
    assert retrain.status == "promoted", retrain
    assert retrain.reason.startswith("better") and "vs champion v1" in retrain.reason
    assert (retrain.champion_before, retrain.champion_after) == ("1", "2")
    assert retrain.labelled_rows == 300 and retrain.evaluation_rows == 150
    client = current_stack().registry.client
    version = client.get_model_version(settings.model_name, "2")
    assert version.tags["gate.compared_with"] == "v1"
    run = client.get_run(version.run_id)
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlops.trigger"] == "retrain"

    again = monitor_flow()  # whatever it finds, the cool-down holds the next retrain
    if again.retrain is not None:
        assert again.retrain.status == "skipped"
        assert again.retrain.reason.startswith("cool-down")
    direct = retrain_flow()
    assert direct.status == "skipped" and direct.reason.startswith("cool-down")


def test_retrain_needs_enough_labelled_rows(stack):
    settings = stack(candidates="logistic_regression", retrain_cooldown_minutes="0")
    train_flow()
    Traffic(settings).send(50, seed=3, wrong_labels=True)
    summary = retrain_flow()
    assert summary.status == "skipped"
    assert summary.reason == (
        "not enough labelled rows: 50, 100 needed (MLOPS_RETRAIN_MIN_LABELLED)"
    )


def test_retrain_disabled_by_default_leaves_the_champion(stack):
    settings = stack(
        candidates="logistic_regression", monitor_window_rows="300", monitor_min_rows="100"
    )
    train_flow()
    Traffic(settings).send(300, seed=21, shift=3.0, wrong_labels=True)
    summary = monitor_flow()
    assert summary.status == "degraded" and summary.retrain is None
    champion = current_stack().registry.champion()
    assert champion is not None and version_of(champion) == "1"


def test_regression_concept_shift_retrains_on_numeric_labels_and_promotes(stack, tmp_path):
    """A regressor whose target moved up by 40: its labels come back as text, become a numeric
    target, and a retrained regressor that saw half of them wins on the other half.

    The table is sent twice (884 labelled rows): half of them joins the 442 original rows, so
    the retrained Ridge learns about half of the move, enough to clear the gate's R2 floor.
    """
    table = tmp_path / "diabetes.csv"  # the user's file, as `mlops train --data` takes it
    load_diabetes(as_frame=True).frame.to_csv(table, index=False)
    settings = stack(
        model_name="diabetes",
        dataset_path=str(table),
        candidates="linear",
        monitor_window_rows="442",
        monitor_min_rows="100",
    )
    first = train_flow()
    assert first.task == "regression" and first.promoted
    traffic = RegressionTraffic(settings)
    traffic.send(label_offset=40.0)
    sent = traffic.send(label_offset=40.0)
    settings = stack(retrain_enabled="true")

    summary = monitor_flow()
    assert summary.status == "degraded", summary.reason
    bias = float(np.mean(sent["prediction"] - sent["label"]))
    assert summary.quality["error_bias"] == pytest.approx(bias) and bias < -30  # 40 too low
    retrain = summary.retrain
    assert retrain is not None and retrain.status == "promoted", retrain
    assert (retrain.champion_before, retrain.champion_after) == ("1", "2")
    assert retrain.labelled_rows == 884 and retrain.evaluation_rows == 442
    assert "rmse" in retrain.reason and "vs champion v1" in retrain.reason
    assert "drifted" not in summary.reason  # the features are the table's own

    registry = current_stack().registry
    version = registry.client.get_model_version(settings.model_name, "2")
    assert version.tags["mlops.task"] == "regression" and version.tags["gate.metric"] == "rmse"
    assert version.tags["gate.compared_with"] == "v1"
    assert modelstore.load_schema(version.run_id).task == "regression"
    # the retrained model learned part of the move; the old one predicts as before
    old, new = (modelstore.load_pipeline(f"models:/{settings.model_name}/{v}") for v in ("1", "2"))
    features = sent.drop(columns=["prediction", "label"])
    lift = float(np.mean(new.predict(features) - old.predict(features)))
    assert 10 < lift < 40
