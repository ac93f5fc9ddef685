"""The traffic simulator against a real predictor, and what the monitor makes of its traffic."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app
from mlops_stack.simulate import Drift, apply_drift

SHIFTED = [
    "mean radius",
    "mean perimeter",
    "mean area",
    "worst radius",
    "worst perimeter",
    "worst area",
    "mean concavity",
    "worst concavity",
    "mean texture",
    "worst texture",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mean radius:shift=2", Drift("mean radius", "shift", 2.0)),
        ("income:scale=1.5", Drift("income", "scale", 1.5)),
        ("plan:mix=premium@0.8", Drift("plan", "mix", 0.8, "premium")),
        ("plan:mix=premium", Drift("plan", "mix", 1.0, "premium")),
    ],
)
def test_drift_specs_parse(text, expected):
    assert Drift.parse(text) == expected


@pytest.mark.parametrize("text", ["mean radius", "x:tilt=2", "x:shift=far"])
def test_bad_drift_specs_say_what_is_expected(text):
    with pytest.raises(ValueError, match="FEATURE:shift=STDS"):
        Drift.parse(text)


def test_apply_drift_changes_only_the_named_features():
    reference = pd.DataFrame({"a": [0.0, 2.0, 4.0], "b": [1.0, 1.0, 1.0], "c": ["x", "y", "z"]})
    rows = reference.copy()
    drifted = apply_drift(
        rows,
        [Drift("a", "shift", 1.0), Drift("b", "scale", 3.0), Drift("c", "mix", 1.0, "w")],
        reference,
        seed=0,
    )
    assert list(drifted["a"]) == [2.0, 4.0, 6.0]  # + one std (2.0)
    assert list(drifted["b"]) == [3.0, 3.0, 3.0]
    assert list(drifted["c"]) == ["w", "w", "w"]
    pd.testing.assert_frame_equal(rows, reference)  # the input is left alone
    with pytest.raises(ValueError, match="no feature 'd'"):
        apply_drift(rows, [Drift("d", "shift", 1.0)], reference, seed=0)


def test_simulated_drifted_traffic_with_labels_is_logged_and_detected(stack):
    # imported here: the rest of this module is unit tests, which need neither MLflow nor Prefect
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from mlops_stack.monitoring_db import MonitoringDB
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack

    from .servers import serving

    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="300",
        monitor_min_rows="100",
        log_flush_seconds="0.05",
    )
    train_flow()
    args = ["--rows", "300", "--rate", "0", "--label-delay", "0.2"]
    for feature in SHIFTED:
        args += ["--drift", f"{feature}:shift=2"]
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
    assert result.exit_code == 0, result.output
    assert "sent 300" in result.output and "300 answered, 0 failed" in result.output
    assert "labels accepted 300, unknown 0" in result.output

    store = MonitoringDB(settings.resolved_monitoring_db_url)
    frame = store.predictions_with_feedback()
    assert len(frame) == 300 and frame["label"].notna().all()
    store.dispose()
    summary = monitor_flow()
    assert summary.status in {"drift", "degraded"}, summary.reason
    assert set(SHIFTED) <= set(summary.drifted_features)
    assert summary.labelled_rows == 300


def test_simulate_refuses_a_bad_drift_spec(stack):
    stack()
    result = CliRunner().invoke(app, ["simulate", "--drift", "nonsense"])
    assert result.exit_code == 2 and "cannot read drift 'nonsense'" in result.output
