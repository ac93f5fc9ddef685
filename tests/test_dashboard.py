"""The dashboard's reads and pages on a real embedded stack (no browser: Streamlit's AppTest).

AppTest runs the real entry script and pages in-process, against the test's own MLflow files
and monitoring database, so the empty states and the seeded figures are checked exactly as the
pages compute them. The browser, nginx and the worker are covered by tests/e2e.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import streamlit as st
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from streamlit.testing.v1 import AppTest

from mlops_stack import worker
from mlops_stack.dashboard import queries
from mlops_stack.flows.monitor import monitor_flow
from mlops_stack.flows.train import train_flow
from mlops_stack.registry import version_of
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack, current_stack

from .servers import wait_for
from .traffic import SHIFTED, Traffic

APP = Path(__file__).resolve().parents[1] / "src" / "mlops_stack" / "dashboard" / "app.py"
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
    scope = queries.Scope(settings.model_name)
    assert queries.model_versions(root).empty
    assert queries.champion(root) is None
    assert queries.monitor_runs(root, scope).empty
    assert queries.open_alerts(root, settings.model_name).empty
    assert queries.alert_history(root, scope).empty
    assert queries.latency(root, scope) is None
    assert queries.labelled(root, scope).empty
    assert queries.traffic(root, scope) == {"last_hour": 0, "last_day": 0, "window": 0, "total": 0}


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

    # the reads the pages make
    root = current_stack()
    scope = queries.Scope(settings.model_name)
    runs = queries.monitor_runs(root, scope)
    assert list(runs["status"]) == ["ok", "drift"]
    features = queries.feature_drift(root, int(runs.iloc[-1]["id"]))
    assert features.iloc[0]["feature"] in SHIFTED and features.iloc[0]["drifted"]
    assert list(features["severity"]) == sorted(features["severity"], reverse=True)
    assert queries.traffic(root, scope)["last_hour"] == 600
    assert queries.traffic(root, queries.Scope("another-model"))["total"] == 0
    assert queries.traffic(root, queries.Scope(settings.model_name, version="2")) == {
        "last_hour": 0, "last_day": 0, "window": 0, "total": 0,
    }  # fmt: skip
    later = queries.Scope(settings.model_name, since=datetime.now(UTC) + timedelta(minutes=1))
    assert queries.monitor_runs(root, later).empty  # the time window is honoured
    assert queries.traffic(root, later)["window"] == 0
    labelled = queries.labelled(root, scope)
    assert len(labelled) == 300
    assert queries.confusion(labelled).to_numpy().sum() == 300
    shifted = queries.current_values(
        root, settings.model_name, runs.iloc[-1]["window_start"],
        runs.iloc[-1]["window_end"], SHIFTED[0],
    )  # fmt: skip
    reference = queries.reference_values(root, "1", SHIFTED[0])
    assert shifted.mean() > reference.mean() + 2 * reference.std()  # the shift, visible
    assert "<html" in queries.report_html(root, runs.iloc[-1]["report_uri"]).lower()

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
