"""The dashboard reads every predictor replica behind one name (dashboard/replicas.py).

A fleet of real predictors (the served app under uvicorn, each with its own /metrics registry)
on one port of distinct loopback addresses, 127.0.0.2 to 127.0.0.4, as Docker's DNS lists a
scaled service's containers; 127.0.0.5 is a replica that is down (nothing listens there). One
name, ``predictor.fleet``, stands for all four: the resolver the code takes as a parameter maps
it, as DNS maps ``api`` on the compose network. Two replicas serve the champion, the third
serves a model name without one (its /predict answers 503: real 5xx, and its /ready 503).

The Prometheus path runs a real Prometheus (Debian's, installed by
infrastructure/ci/prometheus.sh, which scripts/test calls) scraping the same fleet under the job
name of infrastructure/prometheus/prometheus.yml.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
import yaml
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mlops_stack.dashboard import landing, replicas
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack, current_stack
from tests.integration.dashboard.test_dashboard import log_champion
from tests.support.paths import REPO
from tests.support.servers import free_port, server_process, serving

NAME = "predictor.fleet"
UP = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # champion, champion, no champion
DOWN = "127.0.0.5"
OK_REQUESTS = {"127.0.0.2": 4, "127.0.0.3": 6}  # /predict answered 200
BAD_REQUESTS = {"127.0.0.3": 1}  # /predict answered 422 (the caller's error: no 5xx)
UNSERVED = 2  # /predict to 127.0.0.4, answered 503 (no champion)
PROMETHEUS_CONFIG = REPO / "infrastructure/prometheus/prometheus.yml"


@dataclass
class Fleet:
    port: int

    @property
    def url(self) -> str:
        return f"http://{NAME}:{self.port}"

    def address(self, ip: str) -> str:
        return f"{ip}:{self.port}"

    def resolve(self, host: str, addresses: tuple[str, ...] = (*UP, DOWN)) -> list[str]:
        """DNS of the fleet: the name to every replica's address, nothing else."""
        if host != NAME:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(addresses)


@pytest.fixture
def fleet(stack) -> Iterator[Fleet]:
    settings = stack()
    wine = load_wine(as_frame=True).frame
    log_champion(settings, wine, "target", LogisticRegression(max_iter=500), "classification")
    unserved = settings.model_copy(update={"model_name": "nothing-registered"})
    port = free_port(UP[0])
    with ExitStack() as running:
        for ip, served in zip(UP, (settings, settings, unserved), strict=True):
            running.enter_context(serving(create_app(Stack(served)), host=ip, port=port))
        row = {k: float(v) for k, v in wine.drop(columns="target").iloc[0].items()}
        with httpx.Client(timeout=30) as client:
            for ip, count in OK_REQUESTS.items():
                for _ in range(count):
                    answer = client.post(f"http://{ip}:{port}/predict", json={"features": row})
                    assert answer.status_code == 200, answer.text
            for ip, count in BAD_REQUESTS.items():
                for _ in range(count):
                    answer = client.post(f"http://{ip}:{port}/predict", json={"rows": []})
                    assert answer.status_code == 422, answer.text
            for _ in range(UNSERVED):
                answer = client.post(f"http://{UP[2]}:{port}/predict", json={"features": row})
                assert answer.status_code == 503, answer.text
        yield Fleet(port)


def _counts(rate: replicas.ErrorRate) -> dict[str, tuple[float, float]]:
    return {r.address: (r.requests, r.errors) for r in rate.answered}


def test_the_error_rate_sums_every_replica_and_names_the_one_that_is_down(fleet):
    rate = replicas.error_rate(fleet.url, None, resolve=fleet.resolve)

    assert _counts(rate) == {
        fleet.address("127.0.0.2"): (4, 0),
        fleet.address("127.0.0.3"): (7, 0),
        fleet.address("127.0.0.4"): (2, 2),
    }
    assert (rate.requests, rate.errors) == (13, 2) and rate.rate == pytest.approx(2 / 13)
    assert rate.shown == "15.38%"
    [missing] = rate.missing
    assert missing.address == fleet.address(DOWN) and "ConnectError" in missing.reason
    assert rate.replicas == 4 and rate.answered_text().startswith("3 of 4 replicas answered")
    summary = rate.summary()
    assert summary.startswith("2 of 13 /predict and /predict/batch requests answered 5xx")
    assert f"3 of 4 replicas answered; no answer from {fleet.address(DOWN)} (ConnectError" in (
        summary
    )
    assert rate.source == f"each replica's /metrics ({fleet.url})"


def test_one_replica_alone_is_one_replicas_share(fleet):
    """What the dashboard read before: the name's first address only."""
    rate = replicas.error_rate(fleet.url, None, resolve=lambda h: fleet.resolve(h, UP[:1]))
    assert (rate.requests, rate.errors, rate.replicas) == (4, 0, 1)
    assert rate.answered_text() == "1 of 1 replica answered"


def test_no_replica_answering_says_so_and_invents_no_figure(fleet):
    rate = replicas.error_rate(fleet.url, None, resolve=lambda h: fleet.resolve(h, (DOWN,)))
    assert rate.answered == () and rate.rate is None and rate.shown == "n/a"
    assert rate.summary().startswith(f"No data: 0 of 1 replica answered; no answer from {DOWN}")
    assert "`mlops serve api`" in rate.summary()
    with pytest.raises(replicas.NoReplica, match="does not resolve"):
        replicas.error_rate("http://elsewhere.invalid:8000", None, resolve=fleet.resolve)


def test_replicas_that_answered_no_prediction_yet_have_no_rate(stack):
    settings = stack()
    with serving(create_app(Stack(settings)), host=UP[0]) as api:
        rate = replicas.error_rate(api, None)  # an IP literal: itself, no DNS
    assert (rate.requests, rate.rate, rate.shown) == (0, None, "n/a")
    assert rate.summary().startswith("No data yet: no /predict or /predict/batch request")


# --- the landing page ---------------------------------------------------------------------------


def _predictor_status(fleet: Fleet, addresses: tuple[str, ...]) -> dict:
    cache = landing.StatusCache(current_stack, 0, lambda h: fleet.resolve(h, addresses))
    client = TestClient(Starlette(routes=landing.routes("dashboard", cache)))
    services = client.get("/dashboard/status.json").json()["services"]
    return next(s for s in services if s["name"] == "Predictor")


def test_the_landing_page_counts_the_replicas_that_are_ready(fleet, stack):
    stack(dashboard_api_url=fleet.url)

    assert _predictor_status(fleet, UP[:2]) == {
        "name": "Predictor",
        "state": "up",
        "detail": "2 of 2 replicas ready, serving v1",
        "link": "/api/docs",
    }
    mixed = _predictor_status(fleet, (*UP, DOWN))
    assert mixed["state"] == "degraded"
    assert mixed["detail"].startswith(
        f"2 of 4 replicas ready, serving v1; {fleet.address(UP[2])}: answers, not ready: "
        f"no model served yet; {fleet.address(DOWN)}: /ready: ConnectError"
    )
    down = _predictor_status(fleet, (DOWN,))
    assert down["state"] == "down" and down["detail"].startswith("0 of 1 replica ready; ")


# --- Prometheus ---------------------------------------------------------------------------------


def test_the_prometheus_query_uses_the_job_that_scrapes_the_replicas():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == replicas.PREDICTOR_JOB]
    assert job["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "15s"}
    ]


@pytest.fixture
def prometheus(fleet, tmp_path) -> Iterator[str]:
    """A real Prometheus scraping the fleet every second under the stack's job name; yields its
    base URL (under /prometheus, as compose serves it) once every target was scraped after the
    fixture's requests."""
    binary = shutil.which("prometheus")
    assert binary, "no prometheus binary: run infrastructure/ci/prometheus.sh (scripts/test does)"
    targets = [fleet.address(ip) for ip in (*UP, DOWN)]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": replicas.PREDICTOR_JOB, "static_configs": [{"targets": targets}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}/prometheus"
    started = time.time()
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={base}",
    ]

    def scraped_after_start() -> bool:
        try:
            answer = httpx.get(f"{base}/api/v1/targets", timeout=2)
        except httpx.HTTPError:
            return False
        active = answer.json()["data"]["activeTargets"]
        return len(active) == len(targets) and all(
            t["health"] != "unknown" and _epoch(t["lastScrape"]) > started for t in active
        )

    log = tmp_path / "prometheus.log"
    with server_process(command, log, scraped_after_start, "Prometheus to scrape every target", 60):
        yield base


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_prometheus_sums_the_same_counts_over_its_targets(fleet, prometheus):
    from_prometheus = replicas.error_rate(None, prometheus)
    from_replicas = replicas.error_rate(fleet.url, None, resolve=fleet.resolve)

    assert from_prometheus.source == f"Prometheus ({prometheus})"
    assert _counts(from_prometheus) == _counts(from_replicas)
    assert (from_prometheus.requests, from_prometheus.errors) == (13, 2)
    [missing] = from_prometheus.missing
    assert missing.address == fleet.address(DOWN) and "connection refused" in missing.reason
    assert from_prometheus.answered_text().startswith("3 of 4 replicas answered")
    # configured and answering, Prometheus is asked first: the predictor URL is not needed
    assert replicas.error_rate(fleet.url, prometheus, resolve=fleet.resolve) == from_prometheus


def test_an_unreachable_prometheus_falls_back_to_every_replica_and_says_why(fleet):
    closed = f"http://127.0.0.1:{free_port()}/prometheus"
    rate = replicas.error_rate(fleet.url, closed, resolve=fleet.resolve)
    assert (rate.requests, rate.errors, rate.replicas) == (13, 2, 4)
    assert rate.prometheus_error is not None and rate.prometheus_error.startswith(
        f"Prometheus at {closed}: ConnectError"
    )
    assert f"Not from Prometheus: Prometheus at {closed}: ConnectError" in rate.summary()
