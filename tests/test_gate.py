"""The promotion rule, decision by decision."""

from __future__ import annotations

from mlops_stack.gate import decide

FLOORS = {"accuracy": 0.8, "f1": 0.8, "roc_auc": 0.85}


def metrics(roc_auc: float, accuracy: float = 0.9, f1: float = 0.9) -> dict[str, float]:
    return {"roc_auc": roc_auc, "accuracy": accuracy, "f1": f1}


def test_first_model_clearing_floors_is_promoted():
    decision = decide(metrics(0.95), None, metric="roc_auc", floors=FLOORS)
    assert decision.promote and decision.reason.startswith("first model")


def test_first_model_below_a_floor_is_not_promoted_and_says_which():
    decision = decide(metrics(0.95, f1=0.7), None, metric="roc_auc", floors=FLOORS)
    assert not decision.promote
    assert decision.failed_floors == {"f1": (0.7, 0.8)}
    assert "f1 0.7000 < 0.8000" in decision.reason


def test_better_is_promoted():
    decision = decide(
        metrics(0.96), metrics(0.95), metric="roc_auc", floors=FLOORS, champion_version="3"
    )
    assert decision.promote
    assert decision.reason == "better (roc_auc 0.9600 vs champion v3 0.9500)"
    assert decision.champion_score == 0.95


def test_worse_is_kept():
    decision = decide(
        metrics(0.94), metrics(0.95), metric="roc_auc", floors=FLOORS, champion_version="3"
    )
    assert not decision.promote and decision.reason.startswith("worse")


def test_tie_keeps_the_champion():
    decision = decide(
        metrics(0.95), metrics(0.95), metric="roc_auc", floors=FLOORS, champion_version="3"
    )
    assert not decision.promote and decision.reason.startswith("tie")


def test_improvement_must_exceed_the_margin():
    kw = {"metric": "roc_auc", "floors": FLOORS, "min_improvement": 0.01, "champion_version": "1"}
    assert not decide(metrics(0.955), metrics(0.95), **kw).promote
    assert decide(metrics(0.965), metrics(0.95), **kw).promote


def test_better_than_champion_but_below_floor_is_not_promoted():
    decision = decide(
        metrics(0.80), metrics(0.70), metric="roc_auc", floors=FLOORS, champion_version="2"
    )
    assert not decision.promote and "below the absolute floor" in decision.reason


def test_champion_that_cannot_score_the_data_blocks_automatic_promotion():
    decision = decide(
        metrics(0.99),
        None,
        metric="roc_auc",
        floors=FLOORS,
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
        floors=FLOORS,
        champion_version="1",
    )
    assert decision.promote and decision.metric == "f1"
