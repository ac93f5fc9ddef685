"""The landing page (dashboard/landing.py) over real servers: what it says is what they answer.

The predictor runs under uvicorn over a registered champion, PostgreSQL and Redis are the test
servers of infrastructure/ci/services.sh, Prefect is the session's temporary API. What is not
running is really not running: a closed port, a host name that cannot resolve (``.invalid``).
The page is asked through its own routes (the ones ``mlops serve dashboard`` mounts next to
Streamlit); tests/integration/dashboard/test_browser.py asks the served app, tests/e2e the
compose stack.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mlops_stack.dashboard import landing
from mlops_stack.monitoring_db import MonitorRunRow
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack, current_stack
from tests.integration.dashboard.test_dashboard import log_champion
from tests.support.servers import serving


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _client(ttl: float = 0.0) -> TestClient:
    app = Starlette(routes=landing.routes("dashboard", landing.StatusCache(current_stack, ttl)))
    return TestClient(app)


def _by_name(status: dict) -> dict[str, dict]:
    return {s["name"]: s for s in status["services"]}


@pytest.fixture
def served_stack(stack, postgres_url, services, prefect_server):
    """A champion in the registry, the monitoring database on PostgreSQL, Redis, Prefect, and
    the predictor serving the champion; Prometheus and JupyterLab configured but not running."""
    settings = stack(
        monitoring_db_url=postgres_url,
        redis_url=services.redis_url,
        prefect_api_url=PREFECT_API_URL.value(),
        dashboard_prometheus_url="http://prometheus.invalid:9090/prometheus",
        dashboard_jupyter_url=f"http://127.0.0.1:{_closed_port()}/jupyter",
    )
    _, _, _, holdout = log_champion(
        settings,
        load_wine(as_frame=True).frame,
        "target",
        LogisticRegression(max_iter=500),
        "classification",
    )
    with serving(create_app(Stack(settings))) as api:
        yield stack(dashboard_api_url=api), holdout


def test_the_page_shows_each_service_the_champion_and_what_is_not_running(served_stack):
    settings, holdout = served_stack
    root, now = current_stack(), datetime.now(UTC)
    run_id = root.monitor_store.save_run(
        MonitorRunRow(
            started_at=now, finished_at=now, model_name=settings.model_name,
            model_version="1", window_rows=300, analysed_rows=300, status="drift",
            reason="12 of 13 features drifted",
        ),
        [],
    )  # fmt: skip
    root.monitor_store.update_alerts(
        settings.model_name, {"drift": "12 of 13 features drifted"}, run_id
    )

    status = _client().get("/dashboard/status.json").json()
    services = _by_name(status)
    for name in ("Predictor", "MLflow", "Prefect server", "Dashboard", "PostgreSQL", "Redis"):
        assert name in services, services
    assert services["Predictor"]["state"] == "up", services["Predictor"]
    assert services["Predictor"]["detail"] == "1 of 1 replica ready, serving v1"
    assert (
        services["PostgreSQL"]["state"] == "up" and "postgresql" in services["PostgreSQL"]["detail"]
    )
    assert services["Redis"] == {
        "name": "Redis",
        "state": "up",
        "detail": "PING answered",
        "link": None,
    }
    assert services["Prefect server"]["state"] == "up"
    # embedded MLflow (a file): nothing to probe, and the page does not pretend otherwise
    assert (
        services["MLflow"]["state"] == "unknown"
        and "MLOPS_TRACKING_URI" in services["MLflow"]["detail"]
    )
    # no worker polls this session's Prefect server: "unknown" while no monitor/monitor
    # deployment exists, "down" once an earlier test's worker registered one and stopped
    registered = httpx.get(f"{PREFECT_API_URL.value()}/deployments/name/monitor/monitor")
    expected = "down" if registered.status_code == 200 else "unknown"
    assert services["Worker"]["state"] == expected, (registered.status_code, services["Worker"])
    assert "monitor/monitor" in services["Worker"]["detail"]
    # an optional service whose host does not exist is off, one that refuses is down
    assert services["Prometheus"]["state"] == "off", services["Prometheus"]
    assert "--profile observability" in services["Prometheus"]["detail"]
    assert (
        services["JupyterLab"]["state"] == "down"
        and "ConnectError" in services["JupyterLab"]["detail"]
    )

    assert status["champion"]["error"] is None
    champion = status["champion"]["value"]
    assert champion["version"] == "1" and champion["task"] == "classification"
    assert champion["metrics"]["accuracy"] == pytest.approx(holdout["accuracy"])
    assert status["monitor"]["value"]["status"] == "drift"
    assert status["monitor"]["value"]["id"] == run_id
    [alert] = status["alerts"]["value"]
    assert alert["condition"] == "drift" and alert["reason"] == "12 of 13 features drifted"
    assert status["service_level"]["value"] is None
    assert "ConnectError" in status["service_level"]["error"]

    page = _client().get("/dashboard/status")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<meta http-equiv="refresh"' in html and "<script" not in html
    assert 'data-service="Predictor" data-state="up"' in html
    assert 'data-service="Prometheus" data-state="off"' in html
    assert 'id="champion" data-version="1"' in html
    assert f"{holdout['accuracy']:.4f}" in html
    assert 'id="monitor" data-status="drift"' in html
    assert 'id="alerts" data-open="1"' in html
    assert "Prometheus unavailable:" in html


def test_a_service_that_refuses_is_down_with_the_reason(stack, postgres_url):
    closed = _closed_port()
    stack(
        monitoring_db_url=postgres_url,
        redis_url=f"redis://127.0.0.1:{closed}/0",
        dashboard_api_url=f"http://127.0.0.1:{closed}",
    )
    status = _client().get("/dashboard/status.json").json()
    services = _by_name(status)
    assert services["Redis"]["state"] == "down" and "ConnectionError" in services["Redis"]["detail"]
    assert services["Predictor"]["state"] == "down"
    assert services["Predictor"]["detail"].startswith(
        f"0 of 1 replica ready; 127.0.0.1:{closed}: /ready: ConnectError"
    )
    # an empty stack: no champion, no run, no alert, and the page says what produces them
    assert status["champion"] == {"value": None, "error": None}
    assert status["monitor"] == {"value": None, "error": None}
    html = _client().get("/dashboard/status").text
    assert "No data yet: no version of" in html and "No data yet: no monitor run" in html
    assert "No open alert." in html


def test_a_round_is_kept_for_its_ttl_and_shared_by_concurrent_requests(stack, postgres_url):
    stack(monitoring_db_url=postgres_url)
    rounds: list[Stack] = []

    def counted() -> Stack:
        rounds.append(current_stack())
        return rounds[-1]

    async def ask() -> None:
        kept = landing.StatusCache(counted, ttl=60)
        first, second = await asyncio.gather(kept.get(), kept.get())
        assert first is second and len(rounds) == 1
        assert await kept.get() is first and len(rounds) == 1
        fresh = landing.StatusCache(counted, ttl=0)
        assert await fresh.get() is not await fresh.get()
        assert len(rounds) == 3

    asyncio.run(ask())


def test_without_a_base_path_the_routes_sit_at_the_root():
    assert [r.path for r in landing.routes("")] == ["/status", "/status.json"]
    assert [r.path for r in landing.routes("/dashboard/")] == [
        "/dashboard/status",
        "/dashboard/status.json",
    ]


def test_the_landing_page_shows_a_ready_predictor_with_a_degraded_log_as_degraded():
    body = {
        "ready": True,
        "model": {"name": "m", "alias": "champion", "version": "3"},
        "prediction_log": {"ok": False, "detail": "degraded: redis unreachable", "queue_depth": 5},
    }
    state, detail = landing._predictor(httpx.Response(200, json=body))
    assert state == "degraded" and "redis unreachable" in detail and "v3" in detail
    body["prediction_log"]["ok"] = True
    assert landing._predictor(httpx.Response(200, json=body))[0] == "up"
