"""Recorded answers of a real Prometheus, replayed over HTTP on loopback.

The unit tier runs no Prometheus binary: these answers (tests/data/prometheus/README.md says when
and how they were recorded) stand in for one, so the dashboard's SLO and replica reads are tested
against what Prometheus really sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.paths import REPO
from tests.support.servers import QuietHandler, loopback_http

RECORDED_PROMETHEUS = REPO / "tests" / "data" / "prometheus"


class PrometheusReplay:
    """Which recorded answers ``prometheus_replay`` gives, and the queries it was asked."""

    def __init__(self) -> None:
        self.query, self.alerts = "query-traffic", "alerts-none"
        # the error rate's query and targets (dashboard/replicas.py): a fleet of 4 predictors
        self.requests, self.targets = "query-requests-fleet", "targets-fleet"
        self.asked: list[str] = []


@contextmanager
def replaying() -> Iterator[tuple[str, PrometheusReplay]]:
    """A loopback HTTP server answering /prometheus/api/v1/query, /alerts and /targets with
    the recorded answers of a real Prometheus (tests/data/prometheus/README.md): no Prometheus
    binary runs where the unit tests do. Yields its base URL and the replay."""
    from urllib.parse import parse_qs, urlsplit

    from mlops_stack.dashboard.replicas import REQUESTS_QUERY

    replay = PrometheusReplay()

    class Handler(QuietHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            if url.path == "/prometheus/api/v1/query":
                [query] = parse_qs(url.query)["query"]
                replay.asked.append(query)
                name = replay.requests if query == REQUESTS_QUERY else replay.query
            elif url.path == "/prometheus/api/v1/alerts":
                name = replay.alerts
            elif url.path == "/prometheus/api/v1/targets":
                name = replay.targets
            else:
                self.send_error(404)
                return
            body = (RECORDED_PROMETHEUS / f"{name}.json").read_bytes()
            self.send_response(400 if name == "query-bad" else 200)  # as Prometheus did
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with loopback_http(Handler) as url:
        yield f"{url}/prometheus", replay
