"""The loop closing: drift and degradation -> retrain on labelled rows -> gate -> promotion."""

from __future__ import annotations

from mlops_stack.flows.monitor import monitor_flow
from mlops_stack.flows.retrain import retrain_flow
from mlops_stack.flows.train import train_flow
from mlops_stack.registry import version_of
from mlops_stack.stack import current_stack

from .traffic import Traffic


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
