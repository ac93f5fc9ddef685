"""The observability profile through nginx: Prometheus scrapes the predictor and holds its SLOs.

compose-e2e.sh runs the dev stack with `--profile observability`. Prometheus is reached only
at /prometheus/ (nginx), as a user reaches it; the figures it records come from predictions
this module sends through /api/predict (`mlops simulate`).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import httpx

from tests.support.servers import wait_for

SLO_ALERTS = {
    "PredictorErrorBudgetFastBurn",
    "PredictorErrorBudgetSlowBurn",
    "PredictorLatencyBudgetFastBurn",
    "PredictorLatencyBudgetSlowBurn",
}


def _targets(http: httpx.Client) -> dict[str, dict]:
    answer = http.get("/prometheus/api/v1/targets")
    assert answer.status_code == 200, answer.text
    return {t["labels"]["job"]: t for t in answer.json()["data"]["activeTargets"]}


def test_prometheus_scrapes_the_predictor_and_the_dashboard(http):
    def predictor_up() -> dict[str, dict] | None:
        targets = _targets(http)
        return targets if targets.get("predictor", {}).get("health") == "up" else None

    targets = wait_for(predictor_up, timeout=60, what="the predictor's target up in Prometheus")
    # each replica of `api` by its address (dns_sd_configs): one in development
    assert re.fullmatch(
        r"http://\d+\.\d+\.\d+\.\d+:8000/metrics", targets["predictor"]["scrapeUrl"]
    )
    assert targets["dashboard"]["health"] == "up", targets["dashboard"]["lastError"]
    assert targets["prometheus"]["health"] == "up"


def test_the_slo_rules_are_loaded_and_evaluate(http):
    groups = http.get("/prometheus/api/v1/rules").json()["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) >= SLO_ALERTS, sorted(rules)
    for name in ("mlops:predict_availability:ratio_rate5m", "mlops:predict_slow:ratio_rate1h"):
        assert rules[name]["type"] == "recording"
    assert rules["mlops:slo_availability:target"]["query"] == "vector(0.995)"  # the default
    # evaluated without error (health "unknown" until the first evaluation)
    wait_for(
        lambda: all(
            r["health"] == "ok"
            for g in http.get("/prometheus/api/v1/rules").json()["data"]["groups"]
            for r in g["rules"]
        ),
        timeout=60,
        what="every SLO rule evaluated without error",
    )


def _simulate(base_url: str, cwd, rows: int) -> None:
    """Fresh rows of the population (`mlops simulate`), not one row repeated: the monitor runs
    of test_stack.py judge drift over a window these rows join."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    sent = subprocess.run(
        [sys.executable, "-m", "mlops_stack.cli", "simulate", "--url", f"{base_url}/api",
         "--rows", str(rows), "--rate", "0", "--no-labels"],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip
    assert sent.returncode == 0 and f"{rows} answered" in sent.stdout, sent.stdout + sent.stderr


def _instant(http: httpx.Client, query: str) -> list[dict]:
    answer = http.get("/prometheus/api/v1/query", params={"query": query})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def test_predictions_through_nginx_become_slo_figures(http, base_url, tmp_path):
    # A rate counts what a counter gained between two scrapes: requests made before the first
    # scrape that sees a new series (a fresh predictor's /predict counter) are in no rate. So:
    # traffic until Prometheus holds the series, then the traffic the figure is made of.
    _simulate(base_url, tmp_path, 10)
    wait_for(
        lambda: _instant(http, 'mlops_http_requests_total{job="predictor", route="/predict"}'),
        timeout=60,
        what="the predictor's /predict counter scraped",
    )
    _simulate(base_url, tmp_path, 10)

    def availability() -> float | None:
        found = _instant(http, "mlops:predict_availability:ratio_rate5m")
        value = float(found[0]["value"][1]) if found else math.nan
        return None if math.isnan(value) else value  # NaN: no request counted in 5 min yet

    # one scrape (15 s) and one evaluation (15 s) after the requests
    assert wait_for(availability, timeout=90, what="an availability figure") == 1.0


def test_prometheus_ui_is_served_under_its_path(http):
    page = http.get("/prometheus/", follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert page.url.path.startswith("/prometheus/")  # its links and redirects keep the path
