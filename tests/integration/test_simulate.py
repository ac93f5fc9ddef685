"""The traffic simulator against a real predictor, and what the monitor makes of its traffic."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mlops_stack.cli import app
from tests.unit.test_simulate import houses, penguins_like

SIZE = ["mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter"]
"""Features that a shift of mean radius moves most (correlations 0.97-1 with it)."""


def test_simulated_drifted_traffic_with_labels_is_logged_and_detected(stack):
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack
    from tests.support.monitoring import Monitoring
    from tests.support.servers import serving

    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="300",
        monitor_min_rows="100",
        prediction_log_flush_seconds="2",  # a partial batch waits 2 s: simulate must wait it out
    )
    train_flow()
    args = ["--rows", "300", "--rate", "0", "--label-delay", "0.2"]
    args += ["--drift", "mean radius:shift=2", "--concept", "worst radius:threshold=2"]
    store = Monitoring(settings.resolved_monitoring_db_url)
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
        # read while the predictor still runs: simulate returns once every answer is logged,
        # so a monitor run started right after it counts them all
        frame = store.monitor_store.predictions_with_feedback()
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "300 fresh rows (none repeated)" in out
    assert "sent 300" in out and "300 answered (v1 300), 0 failed" in out
    # rows drawn from the 114 held-out rows of 569 carry labels: about a fifth
    labelled = int(re.search(r"labels: (\d+) of 300 rows \(those drawn from held-out", out)[1])
    assert 40 <= labelled <= 80, out
    assert f"labels accepted {labelled}, unknown 0" in out
    # the population moves along mean radius's correlations: its size features by about 2 std
    assert "population shift:" in out and "mean radius +2.00, mean perimeter +2.00" in out, out
    assert re.search(
        r"concept shift: the boundary on 'worst radius' moved from 16\.8 to 26\.\d+ \(\+2 std\)",
        out,
    )
    assert int(re.search(r"(\d+) changed by the concept\)", out)[1]) >= 1
    assert "not logged yet" not in out
    assert len(frame) == 300 and frame["label"].notna().sum() == labelled
    assert not frame.duplicated(subset=SIZE).any()
    # the moved concept: no labelled row between the two cuts is malignant (0) any more
    radius = frame["worst radius"].astype(float)
    between = frame["label"].notna() & (radius > 16.8) & (radius <= 26.4)
    assert between.sum() >= 10 and set(frame.loc[between, "label"].astype(str)) == {"1"}
    store.dispose()
    summary = monitor_flow()
    assert summary.status in {"drift", "degraded"}, summary.reason
    assert set(SIZE) <= set(summary.drifted_features)
    assert summary.labelled_rows == labelled


def test_clean_traffic_from_a_small_table_raises_no_drift(stack, prefect_server, tmp_path):
    """500 fresh rows of a 344-row table: no repeats, so no drift read into them."""
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack
    from tests.support.servers import serving

    table = tmp_path / "penguins.csv"
    penguins_like().to_csv(table, index=False)
    settings = stack(
        dataset_path=str(table),
        target_column="species",
        candidates="logistic_regression",
        prediction_log_flush_seconds="0.05",
    )
    assert settings.monitor_min_rows == 200  # the default the 69 held-out rows are below
    train_flow()
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, "--rate", "0"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "sent 500" in out and "500 answered (v1 500), 0 failed" in out
    assert "population shift" not in out and "concept shift" not in out
    labelled = int(re.search(r"labels accepted (\d+), unknown 0", out)[1])
    assert 70 <= labelled <= 130  # 69 of 344 rows held out: about a fifth of 500

    summary = monitor_flow()
    assert summary.window_rows == 500 and summary.labelled_rows == labelled
    assert summary.drifted_features == [], summary.reason
    assert summary.status == "ok", summary.reason


def test_regression_traffic_sends_numbers_and_drifts_numeric_and_categorical_features(
    stack, prefect_server, tmp_path
):
    """A regressor on a table with a categorical feature: numeric labels, all three kinds."""
    from mlops_stack.flows.train import train_flow
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack
    from tests.support.monitoring import Monitoring
    from tests.support.servers import serving

    table = tmp_path / "houses.csv"
    frame = houses()
    frame.to_csv(table, index=False)
    settings = stack(
        dataset_path=str(table),
        target_column="price",
        candidates="linear",
        prediction_log_flush_seconds="0.05",
    )
    trained = train_flow()
    assert "rmse" in trained.metrics  # the task was inferred: a regressor
    drifts = ["district:mix=harbour@0.9", "size_m2:shift=2", "age:scale=1.5"]
    args = ["--rows", "150", "--rate", "0", *(a for d in drifts for a in ("--drift", d))]
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "150 answered (v1 150), 0 failed" in out
    labelled = int(re.search(r"labels accepted (\d+), unknown 0", out)[1])
    assert 15 <= labelled <= 45  # rows drawn from the holdout (20 % of 600)
    # rooms follows size; age is unrelated, but its sample correlation with size moves it a bit
    corr = frame[["size_m2", "rooms", "age"]].corr()["size_m2"]
    assert corr["rooms"] > 0.7 and abs(corr["age"]) < 0.1
    moved = rf"size_m2 \+2\.00, rooms \+{2 * corr['rooms']:.2f}"
    assert re.search(moved, result.output), result.output

    store = Monitoring(settings.resolved_monitoring_db_url)
    logged = store.monitor_store.predictions_with_feedback()
    store.dispose()
    assert len(logged) == 150
    assert all(isinstance(p, float) for p in logged["prediction"])
    labels = pd.to_numeric(logged["label"].dropna())  # stored as text, sent as numbers
    assert len(labels) == labelled
    gaps = np.abs(labels.to_numpy()[:, None] - frame["price"].to_numpy()[None, :]).min(axis=1)
    assert gaps.max() < 1e-9  # each one a true price of the table
    assert (logged["district"] == "harbour").mean() > 0.85  # mixed in 90 % of the rows
    assert logged["size_m2"].mean() > frame["size_m2"].mean() + 1.5 * frame["size_m2"].std()
    assert logged["age"].max() > frame["age"].max()  # scaled by 1.5
