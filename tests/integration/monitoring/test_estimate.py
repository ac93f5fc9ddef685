"""Accuracy and F1 estimated from a classifier's own probabilities (CBPE), before labels arrive.

The method's promise, tested as such: when labels really are drawn from the probabilities the
model gives (calibrated by construction), the estimate lands within sampling error of the
realised figure scored the way monitoring scores it; the formula on a hand-computed example;
chunk-by-chunk counts equal one pass; and the monitor flow stores and logs it for every
classifier run, labelled or not, with the dashboard showing it next to the realised figures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlops_stack.monitoring.estimate import (
    estimate_quality,
    stored_estimate,
)
from mlops_stack.names import ACCURACY, F1


def test_a_monitor_run_stores_and_logs_the_estimate_labelled_or_not(stack):
    import mlflow

    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from tests.support.traffic import Traffic

    settings = stack(
        candidates="logistic_regression", monitor_window_rows="300", monitor_min_rows="100"
    )
    train_flow()
    traffic = Traffic(settings)
    traffic.send(300, seed=1)  # no label has come back yet
    unlabelled = monitor_flow()
    traffic.send(150, seed=2, true_labels=True)  # the window: 150 unlabelled, 150 labelled
    labelled = monitor_flow()

    newest, first = traffic.store.monitor_store.runs(settings.model_name)
    frame = traffic.store.monitor_store.predictions_with_feedback(
        limit=300, model_name=settings.model_name
    )
    probabilities = pd.DataFrame(list(frame["probabilities"]), index=frame.index)
    window = estimate_quality(probabilities, ["0", "1"])
    same_rows = estimate_quality(probabilities[frame["label"].notna()], ["0", "1"])
    assert window is not None and same_rows is not None and same_rows.rows == 150

    # before any label: an estimate, and nothing realised
    assert unlabelled.labelled_rows == 0 and unlabelled.quality == {}
    assert set(first.estimated) == {"accuracy", "f1", "rows"} and first.estimated["rows"] == 300
    assert unlabelled.estimated == first.estimated
    assert 0.8 < first.estimated["accuracy"] <= 1.0

    # with labels: the window's estimate, and the estimate on the realised figure's rows
    assert newest.estimated == pytest.approx(stored_estimate(window, same_rows), abs=1e-12)
    assert labelled.estimated == newest.estimated and newest.labelled_rows == 150
    # the champion's probabilities are close to calibrated on its own data: within 5 points
    assert newest.estimated["labelled_accuracy"] == pytest.approx(newest.accuracy, abs=0.05)
    assert newest.estimated["labelled_f1"] == pytest.approx(newest.f1, abs=0.05)

    logged = mlflow.get_run(newest.mlflow_run_id).data.metrics
    assert logged["estimated_accuracy"] == pytest.approx(window.metrics[ACCURACY])
    assert logged["estimated_f1"] == pytest.approx(window.metrics[F1])
    assert logged["estimated_rows"] == 300
    assert logged["estimated_accuracy_labelled"] == pytest.approx(same_rows.metrics[ACCURACY])
    assert logged["estimated_f1_labelled"] == pytest.approx(same_rows.metrics[F1])
    before = mlflow.get_run(first.mlflow_run_id).data.metrics
    assert "estimated_accuracy" in before and "estimated_accuracy_labelled" not in before
    traffic.store.dispose()


def test_the_quality_page_shows_the_estimate_next_to_the_realised_figures(stack):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from mlops_stack.dashboard import queries
    from mlops_stack.monitoring_db import MonitorRunRow, Scope
    from mlops_stack.stack import current_stack
    from tests.integration.dashboard.test_dashboard import APP, open_page

    settings = stack()
    st.cache_data.clear()
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=120)
    open_page(app, "quality")
    said = [i.value for i in app.info]
    assert any(n.startswith("No data yet: no monitor run in this window estimated") for n in said)

    store = current_stack()
    now = datetime.now(UTC)

    def save(minutes_ago: int, estimated: dict, **realised) -> None:
        at = now - timedelta(minutes=minutes_ago)
        run = MonitorRunRow(
            started_at=at, finished_at=at, model_name=settings.model_name, model_version="1",
            window_start=at - timedelta(hours=1), window_end=at, window_rows=300,
            analysed_rows=300, status="ok", reason="no drift", drift_share=0.0,
            task="classification", estimated=estimated, **realised,
        )  # fmt: skip
        store.monitor_store.save_run(run, [])

    save(10, {"accuracy": 0.91, "f1": 0.92, "rows": 300}, labelled_rows=0)  # no label yet
    save(
        5,
        {"accuracy": 0.88, "f1": 0.9, "rows": 300, "labelled_accuracy": 0.87,
         "labelled_f1": 0.89, "labelled_rows": 120},
        labelled_rows=120, accuracy=0.8, f1=0.82, metrics={"accuracy": 0.8, "f1": 0.82},
    )  # fmt: skip
    st.cache_data.clear()
    open_page(app, "quality")
    shown = {m.label: m for m in app.metric}
    assert shown["Estimated accuracy"].value == "0.880"
    assert shown["Estimated f1"].value == "0.900"
    assert shown["Realised accuracy"].value == "0.800"
    assert shown["Realised accuracy"].delta == "-0.070 vs estimated"
    assert shown["Realised f1"].delta == "-0.070 vs estimated"
    assert shown["Rows estimated (latest run)"].value == "300"
    assert any("assumes calibrated probabilities" in c.value for c in app.caption)

    [chart] = [
        c
        for c in app.get("vega_lite_chart")
        if "estimated, whole window" in c.proto.spec
        or any(b"estimated" in d.data.data for d in c.proto.datasets)
    ]
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    [points] = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
    counts = points.groupby(["metric", "series"]).size().to_dict()
    assert counts == {
        (metric, series): n
        for metric in ("accuracy", "f1")
        for series, n in (
            ("estimated, whole window", 2),
            ("estimated, labelled rows", 1),
            ("realised, labelled rows", 1),
        )
    }
    realised_points = points[points["series"] == "realised, labelled rows"]
    assert sorted(realised_points["value"]) == pytest.approx([0.8, 0.82])
    assert json.loads(chart.proto.spec)["facet"]["column"]["field"] == "metric"

    reads, scope = current_stack().dashboard_reads, Scope(settings.model_name)
    stored = reads.monitor_runs_frame(scope), reads.monitor_run_results_frame(scope)
    runs = queries.with_estimates(queries.with_results(*stored))
    assert list(runs["estimated_rows"]) == [300, 300]
    assert runs["estimated_labelled_accuracy"].isna().tolist() == [True, False]
