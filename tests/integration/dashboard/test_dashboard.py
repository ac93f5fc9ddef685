"""The dashboard's reads and pages on a real embedded stack (no browser: Streamlit's AppTest).

AppTest runs the real entry script and pages in-process, against the test's own MLflow files
and monitoring database, so the empty states and the seeded figures are checked exactly as the
pages compute them. The browser, nginx and the worker are covered by tests/e2e.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import redis
import streamlit as st
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import precision_recall_fscore_support, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from mlops_stack import modelstore, worker
from mlops_stack.dashboard import queries
from mlops_stack.data import Dataset, infer_schema
from mlops_stack.flows.monitor import monitor_flow
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring.quality import QualityCounter
from mlops_stack.monitoring_db import MonitorRunRow, Scope
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.names import Task
from mlops_stack.preprocessing import build_preprocessor
from mlops_stack.registry import task_of, version_of
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack, current_stack
from tests.support.paths import REPO
from tests.support.servers import serving, wait_for
from tests.support.shadow import expected_figures, log_shadow_traffic
from tests.support.tables import mixed_table
from tests.support.traffic import SHIFTED, Traffic

APP = REPO / "src" / "mlops_stack" / "dashboard" / "app.py"
PAGES = ("overview", "drift", "quality", "models", "alerts")


def open_page(app: AppTest, page: str) -> AppTest:
    app.switch_page(f"views/{page}.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


@pytest.fixture
def dashboard() -> AppTest:
    """The app, not yet run: each test configures its stack first.

    Streamlit's caches are per process, and AppTest runs in this one: cleared here so that no
    test reads another test's stores.
    """
    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(str(APP), default_timeout=120)


def test_every_page_of_an_empty_stack_says_no_data_yet(stack, dashboard):
    stack()
    for page in PAGES:
        open_page(dashboard, page)
        notices = [i.value for i in dashboard.info]
        assert notices and all(n.startswith("No data yet") for n in notices), (page, notices)
        assert all("To produce it" in n for n in notices), (page, notices)
    # the overview still counts: zero is a figure, not an error
    open_page(dashboard, "overview")
    assert metrics(dashboard)["Predictions, last hour"] == "0"


def test_queries_on_an_empty_stack_are_empty_not_errors(stack):
    settings = stack()
    root = current_stack()  # nothing migrated by hand: the database does it on the first read
    reads, scope = root.dashboard_reads, Scope(settings.model_name)
    assert queries.model_versions(root).empty
    assert root.registry.champion_info() is None
    assert reads.monitor_runs_frame(scope).empty
    assert reads.open_alerts_frame(settings.model_name).empty
    assert reads.alert_history_frame(scope).empty
    assert reads.latency(scope) is None
    assert reads.labelled_frame(scope).empty
    assert reads.traffic(scope) == {"last_hour": 0, "last_day": 0, "window": 0, "total": 0}


def test_switched_off_actions_are_disabled_with_the_reason(stack, dashboard):
    stack(dashboard_actions_enabled="false", prefect_api_url="http://127.0.0.1:1/api")
    open_page(dashboard, "models")
    [retrain] = [b for b in dashboard.button if b.label == "Start a retrain"]
    assert retrain.disabled
    assert any("MLOPS_DASHBOARD_ACTIONS_ENABLED=false" in c.value for c in dashboard.caption)


@pytest.mark.timeout(900)
def test_pages_show_what_a_seeded_stack_holds(stack, dashboard, monkeypatch):
    """Train, clean labelled traffic, a monitor run, drifted traffic, another: the pages' story."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()  # the session's Prefect test server
    monkeypatch.setenv("PREFECT_API_URL", api)
    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="300",
        monitor_min_rows="100",
        monitor_min_labelled="50",
        prefect_api_url=api,
        dashboard_prefect_ui_url="/prefect",
    )
    train_flow()
    traffic = Traffic(settings)
    traffic.send(300, seed=1, true_labels=True)
    clean = monitor_flow()
    traffic.send(300, seed=2, shift=3.0)
    drifted = monitor_flow()
    assert (clean.status, drifted.status) == ("ok", "drift")

    # the reads the pages make (dashboard/cache.py: a store's read, reshaped where needed)
    root = current_stack()
    reads, scope = root.dashboard_reads, Scope(settings.model_name)
    runs = queries.with_results(
        reads.monitor_runs_frame(scope), reads.monitor_run_results_frame(scope)
    )
    assert list(runs["status"]) == ["ok", "drift"]
    features = queries.by_severity(reads.feature_drift_frame(int(runs.iloc[-1]["id"])))
    assert features.iloc[0]["feature"] in SHIFTED and features.iloc[0]["drifted"]
    assert list(features["severity"]) == sorted(features["severity"], reverse=True)
    assert reads.traffic(scope)["last_hour"] == 600
    assert reads.traffic(Scope("another-model"))["total"] == 0
    assert reads.traffic(Scope(settings.model_name, version="2")) == {
        "last_hour": 0, "last_day": 0, "window": 0, "total": 0,
    }  # fmt: skip
    later = Scope(settings.model_name, since=datetime.now(UTC) + timedelta(minutes=1))
    assert reads.monitor_runs_frame(later).empty  # the time window is honoured
    assert reads.traffic(later)["window"] == 0
    labelled = reads.labelled_frame(scope)
    assert len(labelled) == 300
    assert queries.confusion(labelled).to_numpy().sum() == 300
    shifted = reads.feature_values(
        settings.model_name, runs.iloc[-1]["window_start"],
        runs.iloc[-1]["window_end"], SHIFTED[0], 5_000,
    )  # fmt: skip
    reference = modelstore.load_reference(
        str(root.registry.version("1").run_id), columns=[SHIFTED[0]]
    )[SHIFTED[0]]
    assert shifted.mean() > reference.mean() + 2 * reference.std()  # the shift, visible
    assert "<html" in root.registry.artifact_text(runs.iloc[-1]["report_uri"]).lower()

    # the pages
    open_page(dashboard, "overview")
    shown = metrics(dashboard)
    assert shown["Champion version"] == "v1"
    assert shown["Predictions, last hour"] == "600"
    assert shown["Open alerts"] == "1"
    assert any("**drift**" in m.value for m in dashboard.markdown)

    open_page(dashboard, "drift")
    shown = metrics(dashboard)
    assert float(shown["Latest drift share"]) >= float(shown["Drift threshold"])
    [table] = dashboard.table
    top = table.value.index[0]
    assert top in SHIFTED and "drifted" in table.value.iloc[0]["status"]
    shown = table.value.iloc[0]
    assert (
        float(shown["p-value"])
        <= float(shown["corrected threshold"])
        == pytest.approx(0.05 / 31, rel=1e-2)
    )
    assert float(shown["effect"]) >= float(shown["min effect"]) == 0.1
    assert metrics(dashboard)["Warning threshold"] == "any feature"

    open_page(dashboard, "quality")
    assert float(metrics(dashboard)["Latest accuracy"]) > 0.8
    [matrix] = dashboard.table
    assert matrix.value.to_numpy().sum() == 300

    open_page(dashboard, "alerts")
    assert metrics(dashboard)["Open"] == "1"
    assert "drift" in list(dashboard.table[0].value["condition"])

    # the retrain button: confirm, click, and the flow run exists in Prefect
    for deployment in worker.deployments(root):
        deployment.apply()
    open_page(dashboard, "models")
    assert "champion" in dashboard.table[0].value.loc["v1", "aliases"]
    dashboard.checkbox(key="retrain_confirm").check().run()
    dashboard.button(key="retrain").click().run()
    [started] = [s.value for s in dashboard.success]
    run_id = started.split("id `")[1].split("`")[0]
    assert f"[Follow it in Prefect](/prefect/runs/flow-run/{run_id})" in started
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        deployment = client.read_deployment(run.deployment_id)
    assert deployment.name == "retrain" and "dashboard" in run.tags
    # no earlier champion: rollback is disabled and says why
    [rollback] = [b for b in dashboard.button if b.label == "Roll back the champion"]
    assert rollback.disabled

    # a second version promoted by hand: now the button rolls back, after confirmation
    first = root.registry.version("1")
    root.registry.client.create_model_version(
        settings.model_name, first.source, run_id=first.run_id
    )
    root.registry.promote("2")
    st.cache_data.clear()  # what the 30 s TTL would do by itself
    open_page(dashboard, "models")
    dashboard.checkbox(key="rollback_confirm").check().run()
    dashboard.button(key="rollback").click().run()
    assert [s.value for s in dashboard.success][-1] == "Champion moved from v2 back to v1."
    champion = root.registry.champion()
    assert champion is not None and version_of(champion) == "1"


def test_dashboard_rollback_switches_the_predictor_within_a_second(
    stack, services, stream_name, dashboard
):
    """The button goes through the registry's rollback, which tells the predictors at once:
    the predictor polls once an hour here, so only the Redis notice can make it switch."""
    settings = stack(
        candidates="logistic_regression",
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        model_events_channel=f"{stream_name}:events",
        reload_poll_seconds="3600",
    )
    train_flow()
    train_flow()  # a tie: v2 is challenger
    current_stack().registry.promote("2")
    body = {"features": {k: float(v) for k, v in Traffic(settings).features.iloc[0].items()}}
    with TestClient(create_app(Stack(settings))) as predictor:
        listening = redis.Redis.from_url(services.redis_url)
        wait_for(
            lambda: listening.pubsub_numsub(settings.model_events_channel)[0][1] >= 1,
            30,
            "the predictor to subscribe to model notices",
        )
        assert predictor.post("/predict", json=body).json()["model"]["version"] == "2"
        open_page(dashboard, "models")
        dashboard.checkbox(key="rollback_confirm").check().run()
        dashboard.button(key="rollback").click().run()
        assert [s.value for s in dashboard.success][-1] == "Champion moved from v2 back to v1."
        wait_for(
            lambda: predictor.post("/predict", json=body).json()["model"]["version"] == "1",
            1.0,
            "the predictor to serve v1 within a second of the dashboard's rollback",
        )


# --- models of every task, built and logged here the way training logs them ------------------


def log_champion(
    settings, frame: pd.DataFrame, target: str, estimator, task_tag: str | None
) -> tuple[Pipeline, pd.DataFrame, pd.Series, dict[str, float]]:
    """Fit ``estimator`` behind the stack's preprocessor on 70 % of ``frame``, log it with its
    schema and holdout metrics, register it (tagged with its task unless ``task_tag`` is None),
    make it champion.

    Returns the pipeline, the held-out rows and labels, and the holdout metrics logged.
    """
    dataset = Dataset(frame=frame, target=target, source="test")
    schema = infer_schema(dataset)
    X, y = dataset.features, dataset.labels
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    pipeline = Pipeline(
        [("preprocess", build_preprocessor(schema, scale=True)), ("model", estimator)]
    )
    pipeline.fit(X_train, y_train)
    predicted = pipeline.predict(X_test)
    if schema.task is Task.REGRESSION:
        holdout = {
            "rmse": float(np.sqrt(np.mean((predicted - y_test) ** 2))),
            "mae": float(np.mean(np.abs(predicted - y_test))),
            "r2": float(r2_score(y_test, predicted)),
        }
    else:
        holdout = {"accuracy": float(np.mean(predicted == y_test))}
    root = current_stack()
    root.registry.use_experiment(settings.experiment_name)
    with mlflow.start_run():
        mlflow.log_metrics(holdout)
        uri = modelstore.log_pipeline(pipeline, X_train, schema, reference_rows=50, seed=0)
    if task_tag:
        version = root.registry.register(uri, task=task_tag)
    else:  # as a version registered before tasks existed: no mlops.task tag
        version = str(mlflow.register_model(uri, settings.model_name).version)
    root.registry.make_champion(version)
    return pipeline, X_test, y_test, holdout


def log_traffic(settings, rows: pd.DataFrame, predictions, labels, version: str = "1") -> pd.Series:
    """Write predictions (spread over the last 50 minutes) and their labels as text, through
    the monitoring database the predictor and /feedback write through; returns their times."""
    start = datetime.now(UTC) - timedelta(minutes=50)
    step = timedelta(minutes=50) / len(rows)
    records = [
        PredictionRecord(
            request_id=f"req-{i}",
            row=0,
            created_at=start + i * step,
            model_name=settings.model_name,
            model_version=version,
            features={k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
            prediction=prediction.item() if hasattr(prediction, "item") else prediction,
            probabilities=None,
            latency_ms=1.0,
        )
        for i, ((_, row), prediction) in enumerate(zip(rows.iterrows(), predictions, strict=True))
    ]
    db = current_stack()
    db.predictions.write_predictions(records)
    db.predictions.record_feedback([(f"req-{i}", 0, str(label)) for i, label in enumerate(labels)])
    return pd.Series([r.created_at for r in records])


@dataclass(frozen=True)
class Chart:
    """One Altair chart as the page sent it: its Vega-Lite spec and its data sets by name."""

    spec: dict
    data: dict[str, pd.DataFrame]

    @property
    def marks(self) -> list[str]:
        layers = self.spec.get("layer", [self.spec])
        return [m["type"] if isinstance(m := layer["mark"], dict) else m for layer in layers]


def charts(app: AppTest) -> list[Chart]:
    """The page's charts (AppTest has no accessor of its own: read the element protos)."""
    return [
        Chart(
            json.loads(chart.proto.spec),
            {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets},
        )
        for chart in app.get("vega_lite_chart")
    ]


def notices(app: AppTest) -> list[str]:
    return [i.value for i in app.info]


def test_a_regression_champion_is_judged_by_its_error(stack, dashboard):
    """Numeric labels come back as text; the page reads them as numbers: RMSE equals numpy's
    on the written rows, a predicted-vs-actual chart with its y = x line, no confusion matrix;
    then a real monitor run's RMSE and MAE, against the holdout, per run."""
    settings = stack(
        model_name="diabetes-regressor", monitor_min_rows="50", monitor_min_labelled="50"
    )
    table = load_diabetes(as_frame=True).frame
    pipeline, X_test, y_test, holdout = log_champion(
        settings, table, "target", Ridge(alpha=1.0), task_tag="regression"
    )

    # before any label: the empty states say what produces the figures
    open_page(dashboard, "quality")
    said = notices(dashboard)
    assert len(said) == 2 and all(n.startswith("No data yet") for n in said), said
    assert any("no labelled prediction" in n and "/api/feedback" in n for n in said), said
    assert not dashboard.table and not charts(dashboard)

    predicted = pipeline.predict(X_test)
    created = log_traffic(settings, X_test, predicted, y_test)
    error = predicted - y_test.to_numpy()
    st.cache_data.clear()

    open_page(dashboard, "overview")
    shown = metrics(dashboard)
    assert shown["Task"] == "regression"
    assert float(shown["Holdout rmse"]) == pytest.approx(holdout["rmse"], abs=5e-4)
    assert float(shown["Holdout r2"]) == pytest.approx(holdout["r2"], abs=5e-4)
    assert "Holdout accuracy" not in shown
    open_page(dashboard, "models")
    versions = dashboard.table[0].value
    assert versions.loc["v1", "task"] == "regression"
    assert float(versions.loc["v1", "rmse"]) == pytest.approx(holdout["rmse"])
    assert "accuracy" not in versions.columns

    open_page(dashboard, "quality")
    shown = metrics(dashboard)
    assert float(shown["RMSE"]) == pytest.approx(np.sqrt(np.mean(error**2)), abs=5e-4)
    assert float(shown["MAE"]) == pytest.approx(np.mean(np.abs(error)), abs=5e-4)
    assert float(shown["Error bias"]) == pytest.approx(np.mean(error), abs=5e-4)
    assert float(shown["R²"]) == pytest.approx(r2_score(y_test, predicted), abs=5e-4)
    assert shown["Labelled rows"] == str(len(y_test))
    assert float(shown["RMSE"]) == pytest.approx(holdout["rmse"], abs=5e-4)  # the same rows
    assert not dashboard.table  # no confusion matrix for numbers
    specs = charts(dashboard)
    assert len(specs) == 3  # predicted vs actual, error over time, error distribution
    scatter, over_time, histogram = specs
    assert scatter.marks == ["circle", "line"]
    [diagonal] = [d for d in scatter.data.values() if len(d) == 2]
    assert (diagonal["label"] == diagonal["prediction"]).all()  # the line y = x
    low = min(y_test.min(), predicted.min())
    high = max(y_test.max(), predicted.max())
    assert list(diagonal["label"]) == pytest.approx([low, high])
    [points] = [d for d in scatter.data.values() if len(d) == len(y_test)]
    assert sorted(points["label"]) == pytest.approx(sorted(y_test))
    assert sorted(points["prediction"]) == pytest.approx(sorted(predicted))
    [buckets] = over_time.data.values()  # RMSE and MAE per 5 minutes of the 50 written
    expected = (
        pd.DataFrame({"bucket": created.dt.floor("5min"), "squared": error**2})
        .groupby("bucket")["squared"]
        .agg(["size", "mean"])
    )
    rmse = buckets[buckets["metric"] == "rmse"].sort_values("when")
    assert list(rmse["rows"]) == list(expected["size"])
    assert list(rmse["value"]) == pytest.approx(list(np.sqrt(expected["mean"])))
    assert set(buckets["metric"]) == {"rmse", "mae"}
    [bins] = histogram.data.values()
    assert bins["rows"].sum() == len(y_test)
    assert bins["start"].min() == pytest.approx(error.min())
    assert any("No data yet: no monitor run" in n for n in notices(dashboard))

    # a monitor run scores the same labelled rows: its figures, per run, against the holdout
    run = monitor_flow()
    assert run.status != "skipped", run.reason
    st.cache_data.clear()
    open_page(dashboard, "quality")
    shown = {m.label: m for m in dashboard.metric}
    assert float(shown["Latest rmse"].value) == pytest.approx(np.sqrt(np.mean(error**2)), abs=5e-4)
    assert float(shown["Latest mae"].value) == pytest.approx(np.mean(np.abs(error)), abs=5e-4)
    # the window's rows are the holdout rows: the same error as on the holdout
    assert shown["Latest rmse"].delta == "+0.000 vs holdout"
    assert shown["Labelled rows (latest run)"].value == str(len(y_test))
    assert shown["Judged above"].value == "holdout × 1.25"
    per_run = charts(dashboard)[0]
    lines, rules = per_run.data.values()
    assert set(lines["metric"]) == {"rmse", "mae"} and len(lines) == 2
    assert dict(zip(rules["metric"], rules["value"], strict=True)) == pytest.approx(
        {"rmse": holdout["rmse"], "mae": holdout["mae"]}
    )
    assert not any(n.startswith("No data yet") for n in notices(dashboard))


def test_a_multiclass_champion_shows_each_class_by_name(stack, dashboard):
    """String class names (the model's task from its schema, no tag): the confusion matrix
    names them on both axes and each class's precision and recall equal scikit-learn's."""
    settings = stack(model_name="wine-classifier")
    wine = load_wine(as_frame=True)
    names = np.array(["barolo", "grignolino", "barbera"])
    table = wine.frame.assign(target=names[wine.frame["target"]])
    pipeline, X_test, y_test, _ = log_champion(
        settings, table, "target", LogisticRegression(max_iter=500), task_tag=None
    )
    predicted = pipeline.predict(X_test)
    truth = y_test.to_numpy().copy()
    truth[:6] = np.roll(truth[:6], 1)  # a few reports disagree with the model
    log_traffic(settings, X_test, predicted, truth)

    open_page(dashboard, "overview")
    assert metrics(dashboard)["Task"] == "classification"
    open_page(dashboard, "quality")
    matrix, per_class = (t.value for t in dashboard.table)
    assert list(matrix.index) == list(matrix.columns) == sorted(names)
    expected = pd.crosstab(pd.Series(truth), pd.Series(predicted)).reindex(
        index=sorted(names), columns=sorted(names), fill_value=0
    )
    assert (matrix.to_numpy() == expected.to_numpy()).all()
    assert matrix.to_numpy().sum() == len(truth)
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=sorted(names), zero_division=0
    )
    assert list(per_class.index) == sorted(names)
    assert per_class["precision"].astype(float).to_numpy() == pytest.approx(precision, abs=5e-4)
    assert per_class["recall"].astype(float).to_numpy() == pytest.approx(recall, abs=5e-4)
    assert list(per_class["true rows"].astype(int)) == list(support)
    assert not any(chart.marks == ["circle", "line"] for chart in charts(dashboard))


def quality_of(schema, rows: pd.DataFrame) -> list[dict]:
    """Per-feature data quality exactly as the monitor counts and stores it."""
    counter = QualityCounter(schema)
    counter.add(rows)
    return [asdict(q) for q in counter.results()]


def save_run(settings, quality: list[dict] | None, window_rows: int) -> int:
    """A monitor run as the monitor stores it; without ``quality``, a skipped one."""
    now = datetime.now(UTC)
    run = MonitorRunRow(
        started_at=now, finished_at=now, model_name=settings.model_name, model_version="1",
        window_start=now - timedelta(hours=1), window_end=now, window_rows=window_rows,
        analysed_rows=window_rows if quality else 0, status="ok" if quality else "skipped",
        reason="no drift" if quality else "too few rows",
        drift_share=0.0 if quality else None, labelled_rows=0, quality=quality,
    )  # fmt: skip
    return current_stack().monitor_store.save_run(run, [])


def test_unseen_categories_are_named_with_counts_and_examples(stack, dashboard):
    settings = stack()
    train = mixed_table(rows=200, seed=0)
    schema = infer_schema(Dataset(frame=train, target="churn", source="test"))
    current = mixed_table(rows=100, seed=1).drop(columns="churn")
    current.loc[:11, "city"] = "marseille"  # 12 rows
    current.loc[12:14, "city"] = "brest"  # 3 rows
    current.loc[:4, "plan"] = "gold"  # 5 rows

    save_run(settings, quality_of(schema, mixed_table(rows=50, seed=2)), 50)  # clean
    open_page(dashboard, "drift")
    assert not dashboard.table and not dashboard.warning
    assert any("No categorical feature of run #1" in c.value for c in dashboard.caption)

    save_run(settings, quality_of(schema, current), len(current))
    skipped = save_run(settings, None, 10)  # too few rows: checked nothing
    assert skipped == 3
    st.cache_data.clear()
    open_page(dashboard, "drift")
    [warning] = [w.value for w in dashboard.warning]
    assert "city (15 rows), plan (5 rows)" in warning
    [table] = [t.value for t in dashboard.table if "examples" in t.value.columns]
    assert list(table.index) == ["city", "plan"]  # most affected first
    assert list(table["unseen rows"].astype(int)) == [15, 5]
    assert list(table["share of window"]) == ["15.0%", "5.0%"]
    assert table.loc["city", "examples"] == "marseille, brest"
    assert table.loc["plan", "examples"] == "gold"
    assert any("Unseen categories, latest checked run #2" in s.value for s in dashboard.subheader)


def test_a_versions_task_comes_from_its_tag_else_its_schema_else_classification(stack):
    settings = stack(model_name="diabetes-regressor")
    log_champion(settings, load_diabetes(as_frame=True).frame, "target", Ridge(), None)
    root = current_stack()
    untagged = root.registry.version("1")
    assert task_of(untagged) is Task.REGRESSION  # the schema artifact says
    client = root.registry.client
    client.set_model_version_tag(settings.model_name, "1", "mlops.task", "classification")
    assert task_of(root.registry.version("1")) is Task.CLASSIFICATION  # the tag
    with mlflow.start_run() as bare:  # a model logged before schemas existed
        mlflow.log_metric("accuracy", 0.9)
    client.create_model_version(settings.model_name, untagged.source, run_id=bare.info.run_id)
    assert task_of(root.registry.version("2")) is Task.CLASSIFICATION
    versions = queries.model_versions(root)
    assert dict(zip(versions["version"], versions["task"], strict=True)) == {
        "2": "classification", "1": "classification",
    }  # fmt: skip
    assert versions.loc[versions["version"] == "2", "accuracy"].item() == 0.9


def test_regression_figures_leave_out_labels_that_are_no_number():
    labelled = pd.DataFrame(
        {
            "created_at": pd.to_datetime(["2026-11-28T10:00Z"] * 4),
            "model_version": "1",
            "prediction": ["10.5", "20", "30", "40"],
            "label": ["12.5", "yes", "27", None],
        }
    )
    rows = queries.regression_rows(labelled)
    assert list(rows["error"]) == [-2.0, 3.0]
    scores = queries.regression_scores(rows)
    assert scores["rmse"] == pytest.approx(np.sqrt((4 + 9) / 2))
    assert scores["mae"] == 2.5 and scores["error_bias"] == 0.5
    assert queries.regression_scores(rows.head(1))["r2"] is None  # undefined on one row


def test_stored_run_metrics_become_columns_without_replacing_existing_ones():
    runs = pd.DataFrame({"id": [1, 2], "accuracy": [0.9, None], "labelled_rows": [10, 20]})
    results = pd.DataFrame(
        {
            "id": [2, 1],
            "task": ["regression", "classification"],
            "metrics": [{"rmse": 3.0, "mae": 2.0}, {"accuracy": 0.5}],
        }
    )
    merged = queries.with_results(runs, results)
    assert list(merged["task"]) == ["classification", "regression"]
    assert list(merged["accuracy"].fillna(-1)) == [0.9, -1]  # the column wins over the JSON
    assert list(merged["rmse"].fillna(-1)) == [-1, 3.0]
    older = results.assign(task=None, metrics=None)  # runs stored before the columns existed
    assert "rmse" not in queries.with_results(runs, older)


# --- champion and challenger side by side ----------------------------------------------------


def side_by_side(app: AppTest) -> pd.DataFrame:
    """The Models page's second table: one column per role, one row per figure."""
    [table] = [t.value for t in app.table if list(t.value.columns)[:1] == ["champion"]]
    return table


@pytest.mark.timeout(900)
def test_models_page_shows_champion_and_challenger_on_the_same_live_rows(stack, dashboard):
    """One version: the page says what makes a challenger. Two (the gate refused the second):
    side by side with the gate's reason; after shadow traffic and a monitor run, both versions'
    live figures on the same labelled rows, the shadow row count, then Promote moves the alias."""
    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="320",
        monitor_min_rows="100",
        live_promotion_enabled="false",  # compared and shown, promoted by the button only
    )
    train_flow()
    open_page(dashboard, "models")
    said = notices(dashboard)
    assert any("no challenger" in n and "a retrain the gate refuses leaves one" in n for n in said)
    assert any("no live comparison" in n and "MLOPS_LIVE_PROMOTION_MIN_LABELLED" in n for n in said)
    assert list(side_by_side(dashboard).columns) == ["champion"]
    [promote] = [b for b in dashboard.button if b.key == "promote"]
    assert promote.disabled

    train_flow()  # the same table again: a tie, the gate keeps v2 as challenger
    st.cache_data.clear()
    open_page(dashboard, "models")
    table = side_by_side(dashboard)
    assert list(table.loc["version"]) == ["v1", "v2"]
    assert table.loc["gate decision", "challenger"] == "kept-as-challenger"
    assert table.loc["gate's reason", "challenger"].startswith("tie (roc_auc")
    assert float(table.loc["holdout roc_auc", "challenger"]) > 0.9
    assert list(table.loc["shadow rows"]) == ["0", "0"]
    assert not any(str(figure).startswith("live ") for figure in table.index)  # none measured
    assert any("no live comparison yet" in n for n in notices(dashboard))

    traffic = log_shadow_traffic(settings, champion="1", challenger="2")
    expected = expected_figures(traffic)
    summary = monitor_flow()
    assert summary.challenger is not None and summary.challenger["labelled_rows"] == 300
    st.cache_data.clear()
    open_page(dashboard, "models")
    table = side_by_side(dashboard)
    for role in ("champion", "challenger"):
        for name in ("accuracy", "roc_auc"):
            shown = table.loc[f"live {name} (same 300 rows)", role]
            assert float(shown) == pytest.approx(expected[role][name], abs=5e-5), (role, name)
    assert float(table.loc["live roc_auc (same 300 rows)", "challenger"]) > float(
        table.loc["live roc_auc (same 300 rows)", "champion"]
    )
    assert list(table.loc["shadow rows"]) == ["0", "340"]  # 40 older rows, outside the window
    [latest] = [m.value for m in dashboard.markdown if "Latest live comparison" in m.value]
    assert "v2 against champion v1 on 300 labelled rows" in latest and "better (roc_auc" in latest
    assert "MLOPS_LIVE_PROMOTION_ENABLED=false" in latest
    assert not any("no live comparison yet" in n for n in notices(dashboard))

    dashboard.checkbox(key="promote_confirm").check().run()
    dashboard.button(key="promote").click().run()
    assert [s.value for s in dashboard.success][-1] == (
        "v2 is champion (replacing v1), promoted by hand."
    )
    champion = current_stack().registry.champion()
    assert champion is not None and version_of(champion) == "2"


# --- the service level: Prometheus' SLO figures, or the predictor's /metrics --------------------


def test_overview_shows_prometheus_slo_figures_and_its_firing_alerts(
    stack, dashboard, prometheus_replay
):
    """Prometheus' answers are recorded real ones (tests/data/prometheus/README.md)."""
    url, replay = prometheus_replay
    replay.query, replay.alerts = "query-firing", "alerts-firing"
    stack(dashboard_prometheus_url=url)
    open_page(dashboard, "overview")
    shown = metrics(dashboard)
    assert shown["Availability, 5 min"] == "100.00%" and shown["Availability, 1 h"] == "100.00%"
    assert shown["p99 latency, 5 min"].endswith(" ms") and shown["SLO alerts firing"] == "2"
    [warning] = [w.value for w in dashboard.warning]
    assert (
        "PredictorLatencyBudgetFastBurn" in warning and "PredictorLatencyBudgetSlowBurn" in warning
    )
    # the error rate since each replica started, from Prometheus' targets (no predictor URL
    # set): its recorded fleet, 2 of 13 requests 5xx over 3 of its 4 targets
    assert shown["Error rate (5xx)"] == "15.38%"
    [summary] = [c.value for c in dashboard.caption if "replicas answered" in c.value]
    assert summary.startswith("2 of 13 /predict and /predict/batch requests answered 5xx")
    assert "3 of 4 replicas answered; no answer from 127.0.0.5:45581 (Get " in summary
    assert summary.endswith(f"From Prometheus ({url}).")


def test_overview_without_prometheus_says_so_and_falls_back_to_the_predictors_metrics(
    stack, dashboard
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = stack(dashboard_prometheus_url=f"http://127.0.0.1:{port}/prometheus")
    wine = load_wine(as_frame=True).frame
    log_champion(settings, wine, "target", LogisticRegression(max_iter=500), "classification")
    row = {k: float(v) for k, v in wine.drop(columns="target").iloc[0].items()}
    with serving(create_app(Stack(settings))) as api:
        stack(dashboard_api_url=api)
        answered = httpx.post(f"{api}/predict", json={"features": row}, timeout=30)
        assert answered.status_code == 200, answered.text
        open_page(dashboard, "overview")
    [warning] = [w.value for w in dashboard.warning]
    assert warning.startswith(f"Prometheus unreachable at http://127.0.0.1:{port}/prometheus")
    assert "every predictor replica's own /metrics" in warning
    assert metrics(dashboard)["Error rate (5xx)"] == "0.00%"
    [summary] = [c.value for c in dashboard.caption if "answered 5xx" in c.value]
    assert summary.startswith("0 of 1 /predict and /predict/batch requests answered 5xx")
    assert f"1 of 1 replica answered. From each replica's /metrics ({api})." in summary
    assert "Not from Prometheus: Prometheus at http://127.0.0.1:" in summary
    assert "Availability, 5 min" not in metrics(dashboard)


@pytest.mark.parametrize(
    ("api_url", "said"),
    [
        ("closed", "No data: 0 of 1 replica answered; no answer from 127.0.0.1:"),
        ("http://api.invalid:8000", "No data: no predictor replica to read (api.invalid does"),
    ],
)
def test_overview_without_a_replica_answering_says_so_and_what_produces_the_figure(
    stack, dashboard, api_url, said
):
    if api_url == "closed":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            api_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    stack(dashboard_api_url=api_url)
    open_page(dashboard, "overview")
    assert metrics(dashboard)["Error rate (5xx)"] == "n/a"
    [summary] = [c.value for c in dashboard.caption if c.value.startswith("No data: ")]
    assert summary.startswith(said) and "(`mlops serve api`; compose: the `api` service)" in summary
