"""Reading the predictor's SLO figures from Prometheus (dashboard/slo.py).

No Prometheus binary runs where the unit tests run (no registry, and Debian's package pulls
in 400 MB of web assets), so these tests replay *recorded real answers*: what the compose
stack's Prometheus (the observability profile, 2.42) answered through nginx to the exact two
requests ``slo.read`` makes, captured with curl (tests/data/prometheus/README.md says when and
how). A loopback server (``prometheus_replay``, conftest.py) serves them over HTTP, so the
client code runs as it does against Prometheus. tests/e2e asserts the live one (its targets
up, its rules loaded).
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from mlops_stack.dashboard import slo

from .conftest import RECORDED_PROMETHEUS as RECORDED


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


def test_the_recorded_figures_and_targets_are_read_as_prometheus_gave_them(prometheus_replay):
    url, replay = prometheus_replay
    level = slo.read(url)
    assert replay.asked == [slo.QUERY]
    assert level.availability == {"5m": 1.0, "1h": 1.0}
    assert level.p99_seconds["5m"] == pytest.approx(0.1645)
    assert level.p99_seconds["1h"] == pytest.approx(0.1645)
    assert level.availability_target == 0.995 and level.latency_target_seconds == 0.25
    assert level.alerts == [] and level.firing == []
    assert slo.percent(level.availability["5m"]) == "100.00%"
    assert slo.milliseconds(level.p99_seconds["1h"]) == "164 ms"


def test_firing_burn_rate_alerts_are_listed_with_their_slo_and_severity(prometheus_replay):
    url, replay = prometheus_replay
    replay.query, replay.alerts = "query-firing", "alerts-firing"
    level = slo.read(url)
    assert level.latency_target_seconds == 0.001
    assert [(a.name, a.slo, a.severity, a.state) for a in level.firing] == [
        ("PredictorLatencyBudgetFastBurn", "latency", "page", "firing"),
        ("PredictorLatencyBudgetSlowBurn", "latency", "ticket", "firing"),
    ]
    assert level.firing[0].summary.startswith("Latency SLO of the predictor")
    assert level.firing[0].active_at.startswith("2026-")


def test_a_window_without_requests_has_no_figure_rather_than_a_perfect_one(prometheus_replay):
    """Prometheus answers NaN for a 0/0 ratio: no request in the last 5 min."""
    url, replay = prometheus_replay
    replay.query = "query-idle"
    level = slo.read(url)
    assert level.availability["5m"] is None and level.p99_seconds["5m"] is None
    assert level.availability["1h"] is not None and level.p99_seconds["1h"] is not None
    assert slo.percent(None) == "n/a" and slo.milliseconds(None) == "n/a"


def test_an_error_answer_is_an_error_naming_its_type(prometheus_replay):
    url, replay = prometheus_replay
    replay.query = "query-bad"
    with pytest.raises(slo.PrometheusError, match="bad_data"):
        slo.read(url)


def test_an_unreachable_prometheus_raises_the_transport_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        slo.read(f"http://127.0.0.1:{port}/prometheus", timeout=1)


def test_only_alerts_carrying_an_slo_label_are_ours():
    answer = recorded("alerts-firing")["data"]
    foreign = {"labels": {"alertname": "Other"}, "state": "firing", "annotations": {}}
    answer = {"alerts": [*answer["alerts"], foreign]}
    assert [a.name for a in slo.slo_alerts(answer)] == [
        "PredictorLatencyBudgetFastBurn",
        "PredictorLatencyBudgetSlowBurn",
    ]
