"""The monitor flow end to end: logged predictions -> checks -> status -> rows -> alerts."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from mlops_stack.flows.monitor import MonitorSummary, monitor_flow
from mlops_stack.flows.train import train_flow
from mlops_stack.names import AlertState
from tests.support.regression import SHIFTED as REGRESSION_SHIFTED
from tests.support.regression import RegressionTraffic, register_regression_champion
from tests.support.traffic import SHIFTED, Traffic


def test_monitor_detects_drift_alerts_once_and_resolves(stack, webhook):
    url, received = webhook
    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="300",
        monitor_min_rows="100",
        alert_webhook_url=url,
    )
    train_flow()
    traffic = Traffic(settings)

    traffic.send(50, seed=1)
    skipped = monitor_flow()
    assert skipped.status == "skipped" and "not enough data: 50 logged rows" in skipped.reason

    statuses = []
    for seed in (2, 3, 4):  # three consecutive clean windows: no false alarm
        traffic.send(300, seed=seed)
        clean = monitor_flow()
        statuses.append(clean.status)
        assert clean.drifted_features == [], clean.reason
    assert statuses == ["ok", "ok", "ok"] and received == []

    traffic.send(300, seed=5, shift=1.5)
    drift = monitor_flow()
    assert drift.status == "drift", drift.reason
    assert set(drift.drifted_features) == set(SHIFTED)
    assert drift.alerts == ["drift opened"]
    assert [(r["condition"], r["state"]) for r in received] == [("drift", "opened")]
    assert "mean radius" in received[0]["text"]

    traffic.send(300, seed=6, shift=1.5)
    again = monitor_flow()
    assert again.status == "drift" and again.alerts == ["drift ongoing"]
    assert len(received) == 1  # not repeated while the condition persists

    traffic.send(300, seed=7)
    recovered = monitor_flow()
    assert recovered.status == "ok" and recovered.alerts == ["drift resolved"]
    assert [(r["condition"], r["state"]) for r in received][-1] == ("drift", "resolved")

    store = traffic.store
    [alert] = store.monitor_store.alerts()
    assert alert.state == "resolved" and alert.resolved_at >= alert.opened_at
    runs = store.monitor_store.runs(settings.model_name)
    assert [r.status for r in reversed(runs)] == [
        "skipped",
        "ok",
        "ok",
        "ok",
        "drift",
        "drift",
        "ok",
    ]
    drifted_run = runs[2]
    features = store.monitor_store.feature_drift(drifted_run.id)
    assert {f.feature for f in features if f.drifted} == set(SHIFTED)
    assert features[0].drifted  # drifted features first
    assert all(f.effect >= 0.1 and f.score <= f.threshold for f in features if f.drifted)
    assert {f.threshold for f in features} == {0.05 / 31}  # 30 features and the prediction
    assert "(corrected for 31 tests at alpha 0.05: p <= 0.0016 and effect >= 0.1)" in drift.reason
    assert drifted_run.report_uri.endswith("drift_report.html")
    assert drift.quality_report_uri is None  # a classifier's window: no regression report
    report = Path(mlflow.artifacts.download_artifacts(drifted_run.report_uri)).read_text()
    assert "<html" in report[:2000].lower() and len(report) > 100_000


def _monitor_300_wrong_labels(stack, **env: str) -> tuple[MonitorSummary, Traffic]:
    """A champion, 300 logged rows all labelled wrong, one monitor run over them."""
    settings = stack(
        candidates="logistic_regression", monitor_window_rows="300", monitor_min_rows="100", **env
    )
    train_flow()
    traffic = Traffic(settings)
    traffic.send(300, seed=11, wrong_labels=True)
    return monitor_flow(), traffic


def test_wrong_labels_mean_degraded(stack):
    degraded, traffic = _monitor_300_wrong_labels(stack)
    assert degraded.status == "degraded", degraded.reason
    assert degraded.labelled_rows == 300
    assert degraded.quality["accuracy"] < 0.2
    assert "accuracy" in degraded.reason and "on the holdout" in degraded.reason
    [alert] = traffic.store.monitor_store.alerts(AlertState.OPEN)
    assert alert.condition == "degraded"


def test_too_few_labels_are_shown_but_not_judged(stack):
    # 300 wrong labels would mean degraded; with 301 needed they only say so in the reason
    summary, traffic = _monitor_300_wrong_labels(stack, monitor_min_labelled="301")
    assert summary.status != "degraded", summary.reason
    assert summary.quality["accuracy"] < 0.2  # measured and stored all the same
    assert "quality not judged: 300 labelled rows, 301 needed" in summary.reason
    assert traffic.store.monitor_store.alerts(AlertState.OPEN) == []


def test_monitor_without_champion_is_skipped(stack):
    stack()
    summary = monitor_flow()
    assert summary.status == "skipped" and "no champion yet" in summary.reason


# --- a regression champion -------------------------------------------------------------------


def test_regression_monitor_judges_errors_and_stores_them_by_name(stack):
    settings = stack(model_name="diabetes", monitor_window_rows="442", monitor_min_rows="100")
    baseline = register_regression_champion()
    traffic = RegressionTraffic(settings)

    sent = traffic.send()  # the true labels
    clean = monitor_flow()
    assert clean.status == "ok", clean.reason
    assert clean.labelled_rows == 442
    assert set(clean.quality) == {"rmse", "mae", "r2", "error_bias"}
    for name, value in baseline.items():  # the same rows the champion's figures come from
        assert clean.quality[name] == pytest.approx(value)
    bias = np.mean(sent["prediction"] - sent["label"])
    assert clean.quality["error_bias"] == pytest.approx(bias, abs=1e-9)

    traffic.send(error_scale=1.5)
    degraded = monitor_flow()
    assert degraded.status == "degraded", degraded.reason
    assert degraded.quality["rmse"] == pytest.approx(1.5 * baseline["rmse"])
    assert degraded.quality["mae"] == pytest.approx(1.5 * baseline["mae"])
    rmse = f"rmse {1.5 * baseline['rmse']:.4g} vs {baseline['rmse']:.4g} on the holdout (up 50.0%"
    assert rmse in degraded.reason
    [alert] = traffic.store.monitor_store.alerts(AlertState.OPEN)
    assert alert.condition == "degraded" and "rmse" in alert.reason
    assert degraded.quality_report_uri.endswith("reports/quality_report.html")
    report = Path(mlflow.artifacts.download_artifacts(degraded.quality_report_uri)).read_text()
    assert "<html" in report[:2000].lower() and "Predicted vs Actual" in report

    newest, first = traffic.store.monitor_store.runs(settings.model_name)
    assert (newest.task, first.task) == ("regression", "regression")
    assert newest.metrics == pytest.approx(degraded.quality)
    assert first.metrics == pytest.approx(clean.quality)
    assert newest.baseline == pytest.approx(baseline)
    assert (newest.accuracy, newest.f1, newest.roc_auc) == (None, None, None)
    assert newest.labelled_rows == 442 and newest.prediction_drifted is False


def test_regression_monitor_finds_drift_of_the_predicted_numbers(stack):
    settings = stack(model_name="diabetes", monitor_window_rows="442", monitor_min_rows="100")
    register_regression_champion()
    traffic = RegressionTraffic(settings)

    traffic.send(labelled=False)  # the training rows again: nothing moved
    clean = monitor_flow()
    assert clean.status == "ok", clean.reason
    traffic.send(shift=1.5, labelled=False)
    moved = monitor_flow()
    assert set(moved.drifted_features) == set(REGRESSION_SHIFTED)
    assert "predicted values drifted (K-S p_value" in moved.reason
    assert moved.status == "warning"  # 2 of 10 features: a warning, not drift (30 %)

    newest, first = traffic.store.monitor_store.runs(settings.model_name)
    assert first.prediction_drifted is False and newest.prediction_drifted is True
    assert newest.prediction_drift_score < 1e-10 < first.prediction_drift_score
    assert newest.metrics is None and newest.task == "regression"
