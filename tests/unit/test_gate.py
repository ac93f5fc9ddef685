"""The promotion rule, decision by decision."""

from __future__ import annotations

import pytest

from mlops_stack.gate import GateConfigError, decide, resolve_metric

FLOORS = {"accuracy": 0.8, "f1": 0.8, "roc_auc": 0.85}


def metrics(roc_auc: float, accuracy: float = 0.9, f1: float = 0.9) -> dict[str, float]:
    return {"roc_auc": roc_auc, "accuracy": accuracy, "f1": f1}


def test_first_model_clearing_floors_is_promoted():
    decision = decide(metrics(0.95), None, metric="roc_auc", bounds=FLOORS)
    assert decision.promote and decision.reason.startswith("first model")


def test_first_model_below_a_floor_is_not_promoted_and_says_which():
    decision = decide(metrics(0.95, f1=0.7), None, metric="roc_auc", bounds=FLOORS)
    assert not decision.promote
    assert decision.failed_bounds == {"f1": (0.7, 0.8)}
    assert "f1 0.7000 < 0.8000" in decision.reason


def test_better_is_promoted():
    decision = decide(
        metrics(0.96), metrics(0.95), metric="roc_auc", bounds=FLOORS, champion_version="3"
    )
    assert decision.promote
    assert decision.reason == "better (roc_auc 0.9600 vs champion v3 0.9500, higher is better)"
    assert decision.champion_score == 0.95


def test_worse_is_kept():
    decision = decide(
        metrics(0.94), metrics(0.95), metric="roc_auc", bounds=FLOORS, champion_version="3"
    )
    assert not decision.promote and decision.reason.startswith("worse")


def test_tie_keeps_the_champion():
    decision = decide(
        metrics(0.95), metrics(0.95), metric="roc_auc", bounds=FLOORS, champion_version="3"
    )
    assert not decision.promote and decision.reason.startswith("tie")


def test_improvement_must_exceed_the_margin():
    kw = {"metric": "roc_auc", "bounds": FLOORS, "min_improvement": 0.01, "champion_version": "1"}
    assert not decide(metrics(0.955), metrics(0.95), **kw).promote
    assert decide(metrics(0.965), metrics(0.95), **kw).promote


def test_better_than_champion_but_below_floor_is_not_promoted():
    decision = decide(
        metrics(0.80), metrics(0.70), metric="roc_auc", bounds=FLOORS, champion_version="2"
    )
    assert not decision.promote and "outside the absolute bounds" in decision.reason


def test_champion_that_cannot_score_the_data_blocks_automatic_promotion():
    decision = decide(
        metrics(0.99),
        None,
        metric="roc_auc",
        bounds=FLOORS,
        champion_version="2",
        champion_error="KeyError: 'x9'",
    )
    assert not decision.promote
    assert "cannot be scored" in decision.reason and "promote by hand" in decision.reason


def test_gate_metric_is_configurable():
    decision = decide(
        metrics(0.95, f1=0.95),
        metrics(0.99, f1=0.90),
        metric="f1",
        bounds=FLOORS,
        champion_version="1",
    )
    assert decision.promote and decision.metric == "f1"


# --- lower-is-better metrics (regression) ----------------------------------------------------
BOUNDS = {"r2": 0.0, "rmse": 60.0}


def errors(rmse: float, mae: float = 40.0, r2: float = 0.4) -> dict[str, float]:
    return {"rmse": rmse, "mae": mae, "r2": r2}


def test_lower_rmse_is_better_and_says_so():
    decision = decide(
        errors(52.1), errors(55.3), metric="rmse", bounds=BOUNDS, champion_version="1"
    )
    assert decision.promote
    assert decision.reason == "better (rmse 52.1000 vs champion v1 55.3000, lower is better)"
    assert (decision.candidate_score, decision.champion_score) == (52.1, 55.3)


def test_higher_rmse_is_worse():
    decision = decide(
        errors(55.3), errors(52.1), metric="rmse", bounds=BOUNDS, champion_version="1"
    )
    assert not decision.promote and decision.reason.startswith("worse (rmse 55.3000")
    assert decision.reason.endswith("lower is better)")


def test_lower_is_better_improvement_must_exceed_the_margin():
    kw = {"metric": "rmse", "bounds": BOUNDS, "min_improvement": 1.0, "champion_version": "1"}
    short = decide(errors(54.5), errors(55.3), **kw)
    assert not short.promote and short.reason.startswith("not enough better")
    assert "needs > 1.0000" in short.reason
    assert decide(errors(54.2), errors(55.3), **kw).promote


def test_lower_is_better_tie_keeps_the_champion():
    decision = decide(errors(52.1), errors(52.1), metric="rmse", bounds={}, champion_version="4")
    assert not decision.promote and decision.reason.startswith("tie")


def test_maximum_bounds_refuse_a_large_error_and_minimums_a_negative_r2():
    too_large = decide(errors(61.0), None, metric="rmse", bounds=BOUNDS)
    assert not too_large.promote
    assert too_large.failed_bounds == {"rmse": (61.0, 60.0)}
    assert "rmse 61.0000 > 60.0000" in too_large.reason
    worse_than_mean = decide(errors(50.0, r2=-0.02), None, metric="rmse", bounds=BOUNDS)
    assert worse_than_mean.failed_bounds == {"r2": (-0.02, 0.0)}
    assert "r2 -0.0200 < 0.0000" in worse_than_mean.reason


def test_bounds_of_the_other_task_do_not_apply():
    """Settings hold both tasks' bounds; a regressor reports no ROC AUC and is not refused."""
    decision = decide(errors(50.0), None, metric="rmse", bounds={**FLOORS, **BOUNDS})
    assert decision.promote and decision.failed_bounds == {}


def test_champion_without_the_gate_metric_cannot_be_compared():
    decision = decide(errors(50.0), metrics(0.9), metric="rmse", bounds={}, champion_version="2")
    assert not decision.promote and "cannot be scored" in decision.reason
    assert "reports no rmse" in decision.reason


@pytest.mark.parametrize(
    ("configured", "task", "resolved"),
    [
        ("auto", "classification", "roc_auc"),
        ("auto", "regression", "rmse"),
        ("mae", "regression", "mae"),
        ("f1", "classification", "f1"),
    ],
)
def test_gate_metric_resolves_per_task(configured, task, resolved):
    assert resolve_metric(configured, task) == resolved


def test_gate_metric_of_the_other_task_is_a_clear_error():
    with pytest.raises(GateConfigError, match="roc_auc does not apply to a regression model"):
        resolve_metric("roc_auc", "regression")
    with pytest.raises(GateConfigError, match="use auto or one of accuracy, f1, roc_auc"):
        resolve_metric("rmse", "classification")


# --- the gate's settings ---------------------------------------------------------------------
def test_settings_hold_both_tasks_bounds_and_unset_maximums_are_no_bound():
    from mlops_stack.settings import Settings

    default = Settings(_env_file=None)
    assert default.gate_metric == "auto"
    assert default.gate_thresholds == {"accuracy": 0.8, "f1": 0.8, "roc_auc": 0.85, "r2": 0.0}
    bounded = Settings(_env_file=None, gate_max_rmse="55.5", gate_max_mae="", gate_min_r2="")
    assert bounded.gate_thresholds["rmse"] == 55.5
    assert "mae" not in bounded.gate_thresholds and "r2" not in bounded.gate_thresholds


def test_candidate_alias_is_accepted_and_named_by_its_task_neutral_name():
    from mlops_stack.settings import Settings

    settings = Settings(_env_file=None, candidates="logistic_regression, random_forest,linear")
    assert settings.candidate_names == ["linear", "random_forest"]
    with pytest.raises(ValueError, match="unknown candidate"):
        Settings(_env_file=None, candidates="svm")
