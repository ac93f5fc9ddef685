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
from tests.support.prometheus import RECORDED_PROMETHEUS as RECORDED


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


# --- the error rate over the predictor's replicas (dashboard/replicas.py) ----------------------


def test_the_error_rate_sums_the_recorded_targets_and_names_the_one_down(prometheus_replay):
    from mlops_stack.dashboard import replicas

    url, replay = prometheus_replay
    rate = replicas.from_prometheus(url, timeout=2)
    assert replay.asked == [replicas.REQUESTS_QUERY]
    assert [(r.address, r.requests, r.errors) for r in rate.answered] == [
        ("127.0.0.2:45581", 4, 0),
        ("127.0.0.3:45581", 7, 0),  # six 200 and one 422: a 4xx is the caller's error
        ("127.0.0.4:45581", 2, 2),
    ]
    [missing] = rate.missing
    assert missing.address == "127.0.0.5:45581" and "connection refused" in missing.reason
    assert (rate.requests, rate.errors, rate.shown) == (13, 2, "15.38%")


def test_a_prometheus_without_the_predictor_job_is_passed_over_for_the_replicas():
    from mlops_stack.dashboard import replicas

    targets = recorded("targets-fleet")["data"]
    for target in targets["activeTargets"]:
        target["labels"]["job"] = "something-else"
    with pytest.raises(replicas.NoReplica, match="no target in its 'predictor' job"):
        replicas.from_prometheus_answers("http://p", targets, recorded("query-requests-fleet"))


def test_a_replica_is_asked_by_address_under_its_name():
    from mlops_stack.dashboard import replicas

    addresses = ["10.0.0.7", "10.0.0.8"]
    found = replicas.replicas("https://api.example:8443/base", lambda host: addresses)
    assert [r.address for r in found] == ["10.0.0.7:8443", "10.0.0.8:8443"]
    assert found[0].get_args("/metrics") == {
        "url": "https://10.0.0.7:8443/base/metrics",
        "headers": {"Host": "api.example:8443"},
        "extensions": {"sni_hostname": "api.example"},
    }
    assert replicas.a_records("127.0.0.9") == ["127.0.0.9"]  # an IP literal: no DNS
    assert "127.0.0.1" in replicas.a_records("localhost")
    with pytest.raises(replicas.NoReplica, match="has no address"):
        replicas.replicas("http://api:8000", lambda host: [])
