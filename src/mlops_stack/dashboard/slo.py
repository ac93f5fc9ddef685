"""The predictor's service level as Prometheus records it (compose profile ``observability``).

Prometheus scrapes the predictor's /metrics and evaluates infrastructure/prometheus/rules/slo.yml:
availability (share of /predict and /predict/batch answers that are not 5xx) and p99 latency
over 5 min and 1 h, the targets themselves, and multi-window burn-rate alerts. This module asks
its HTTP API for those recorded series (one query) and for the SLO alerts (``/api/v1/alerts``),
and shapes the answers for the Overview and the landing page. The figures are Prometheus' own:
a window without a request has no value (0/0) and reads as None, never as 100 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx

WINDOWS = ("5m", "1h")
RECORDS = {
    "availability": "mlops:predict_availability:ratio_rate{window}",
    "p99_seconds": "mlops:predict_latency_seconds:p99_rate{window}",
}
AVAILABILITY_TARGET = "mlops:slo_availability:target"
LATENCY_TARGET = "mlops:slo_latency_seconds:target"
# every series the page shows, in one instant query
QUERY = '{__name__=~"mlops:(predict_availability:ratio|predict_latency_seconds:p99)_rate(5m|1h)|mlops:slo_.+:target"}'  # noqa: E501
SLO_LABEL = "slo"  # the label the SLO alerts carry (availability, latency); others are not ours


class PrometheusError(RuntimeError):
    """Prometheus answered, but not with a successful API response."""


@dataclass(frozen=True)
class SloAlert:
    """One SLO alert Prometheus holds: pending (its condition just became true) or firing."""

    name: str
    slo: str
    severity: str
    state: str
    active_at: str
    summary: str


@dataclass(frozen=True)
class ServiceLevel:
    """The recorded figures by window ("5m", "1h"); None where the window had no request."""

    availability: dict[str, float | None]
    p99_seconds: dict[str, float | None]
    availability_target: float | None
    latency_target_seconds: float | None
    alerts: list[SloAlert] = field(default_factory=list)

    @property
    def firing(self) -> list[SloAlert]:
        return [a for a in self.alerts if a.state == "firing"]


def read(base_url: str, timeout: float = 2.0) -> ServiceLevel:
    """The service level from the Prometheus at ``base_url`` (its external URL with the
    /prometheus path). Raises ``httpx.HTTPError`` when it cannot be reached and
    :class:`PrometheusError` when it answers with an error."""
    base = base_url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        series = api_data(client.get(f"{base}/api/v1/query", params={"query": QUERY}))
        alerts = api_data(client.get(f"{base}/api/v1/alerts"))
    return from_answers(series, alerts)


def api_data(answer: httpx.Response) -> Any:
    """The ``data`` of a Prometheus API answer; its error type and text otherwise."""
    try:
        body = answer.json()
    except ValueError:
        answer.raise_for_status()
        raise PrometheusError(f"{answer.url}: not a Prometheus API answer") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{answer.url}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def from_answers(query_data: dict[str, Any], alerts_data: dict[str, Any]) -> ServiceLevel:
    """The service level from the ``data`` of the instant query and of /api/v1/alerts."""
    values = recorded(query_data)
    return ServiceLevel(
        availability={w: values.get(RECORDS["availability"].format(window=w)) for w in WINDOWS},
        p99_seconds={w: values.get(RECORDS["p99_seconds"].format(window=w)) for w in WINDOWS},
        availability_target=values.get(AVAILABILITY_TARGET),
        latency_target_seconds=values.get(LATENCY_TARGET),
        alerts=slo_alerts(alerts_data),
    )


def recorded(query_data: dict[str, Any]) -> dict[str, float | None]:
    """Each series of an instant vector by name; NaN (a 0/0 ratio: no request) as None."""
    if query_data.get("resultType") != "vector":
        raise PrometheusError(f"expected an instant vector, got {query_data.get('resultType')}")
    values: dict[str, float | None] = {}
    for sample in query_data["result"]:
        value = float(sample["value"][1])
        values[sample["metric"]["__name__"]] = None if math.isnan(value) else value
    return values


def slo_alerts(alerts_data: dict[str, Any]) -> list[SloAlert]:
    """The SLO alerts (those with an ``slo`` label), firing first, then by name."""
    found = [
        SloAlert(
            name=alert["labels"].get("alertname", ""),
            slo=alert["labels"][SLO_LABEL],
            severity=alert["labels"].get("severity", ""),
            state=alert.get("state", ""),
            active_at=alert.get("activeAt", ""),
            summary=alert.get("annotations", {}).get("summary", ""),
        )
        for alert in alerts_data.get("alerts", [])
        if SLO_LABEL in alert.get("labels", {})
    ]
    return sorted(found, key=lambda a: (a.state != "firing", a.name))


def percent(value: float | None) -> str:
    """An availability as the pages show it: two decimals of a percent; n/a without requests."""
    return "n/a" if value is None else f"{value:.2%}"


def milliseconds(value: float | None) -> str:
    """A latency in ms as the pages show it; n/a without requests."""
    return "n/a" if value is None else f"{value * 1000:.0f} ms"
