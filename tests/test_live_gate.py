"""The live gate: champion and shadow challenger judged on the same labelled live rows.

The decision itself is pure (:func:`mlops_stack.gate.live_decision`); the monitor flow's part
runs on a real embedded registry (two trained versions) and monitoring database, with the shadow
rows written as the predictor writes them.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import mlflow
import pytest

from mlops_stack.gate import live_decision
from mlops_stack.names import GateOutcome

# --- the decision ----------------------------------------------------------------------------


def decide(champion: float, challenger: float, rows: int = 300, *, metric: str = "roc_auc", **kw):
    options = {"min_improvement": 0.0, "min_labelled": 200} | kw
    return live_decision(
        {metric: champion}, {metric: challenger}, rows, metric=metric, champion_version="1",
        **options,
    )  # fmt: skip


def test_a_higher_roc_auc_wins_and_a_lower_one_keeps_the_champion():
    better = decide(0.80, 0.90)
    assert better.promote
    assert better.reason == (
        "better (roc_auc 0.9000 vs champion v1 0.8000, higher is better) on 300 live labelled rows"
    )
    assert (better.candidate_score, better.champion_score) == (0.90, 0.80)
    worse = decide(0.90, 0.80)
    assert not worse.promote and worse.reason.startswith("worse (roc_auc 0.8000")


def test_a_lower_rmse_wins_and_a_higher_one_keeps_the_champion():
    better = decide(12.0, 10.0, metric="rmse")
    assert better.promote and "lower is better" in better.reason
    assert "on 300 live labelled rows" in better.reason
    assert not decide(10.0, 12.0, metric="rmse").promote


def test_a_tie_keeps_the_champion():
    tie = decide(0.85, 0.85)
    assert not tie.promote and tie.reason.startswith("tie (") and "keeps the champion" in tie.reason
    assert not decide(7.5, 7.5, metric="rmse").promote


def test_better_by_less_than_the_minimum_improvement_keeps_the_champion():
    small = decide(0.80, 0.81, min_improvement=0.02)
    assert not small.promote and "not enough better" in small.reason
    assert decide(0.80, 0.83, min_improvement=0.02).promote


def test_too_few_rows_decide_nothing_even_for_a_clear_winner():
    few = decide(0.50, 0.99, rows=199)
    assert not few.promote
    assert few.reason == (
        "no decision on 199 live labelled rows: 200 needed (MLOPS_LIVE_PROMOTION_MIN_LABELLED)"
    )
    assert decide(0.50, 0.99, rows=200).promote  # the minimum itself is enough


def test_an_undefined_metric_decides_nothing():
    one_class = live_decision(
        {"roc_auc": None}, {"roc_auc": 0.9}, 300,
        metric="roc_auc", min_improvement=0.0, min_labelled=200,
    )  # fmt: skip
    assert not one_class.promote and "roc_auc is undefined on these rows" in one_class.reason
    assert math.isnan(decide(0.8, math.nan).candidate_score)
    assert not decide(0.8, math.nan).promote


# --- the monitor flow ------------------------------------------------------------------------


@pytest.fixture
def webhook():
    """A real HTTP server on loopback that records what is POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@pytest.mark.timeout(600)
def test_monitor_compares_on_the_same_rows_and_promotes_a_live_winner(
    prefect_server, stack, webhook
):
    """Three runs on one window: too few rows needed -> stored, no decision; promotion off ->
    stored, kept; on -> the challenger is champion, the decision recorded and announced."""
    from typer.testing import CliRunner

    from mlops_stack.cli import app
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.parameters import MonitorParameters
    from mlops_stack.monitoring_db import MonitoringDB
    from mlops_stack.registry import version_of
    from mlops_stack.stack import current_stack

    from .shadow import champion_and_challenger, expected_figures, log_shadow_traffic

    url, received = webhook
    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="320",  # the 20 rows without a shadow answer and the 300 compared
        monitor_min_rows="100",
        alert_webhook_url=url,
    )
    champion, challenger = champion_and_challenger()
    assert (champion, challenger) == ("1", "2")
    refused = current_stack().registry.version(challenger).tags["gate.reason"]
    traffic = log_shadow_traffic(settings, champion=champion, challenger=challenger)
    expected = expected_figures(traffic)
    assert expected["challenger"]["roc_auc"] > expected["champion"]["roc_auc"] + 0.3

    def run(**options):
        return monitor_flow(MonitorParameters.from_settings(settings, **options))

    waiting = run(live_promotion_min_labelled=301).challenger
    assert waiting["labelled_rows"] == 300 and waiting["shadow_rows"] == 300
    assert waiting["decision"].startswith("no decision on 300 live labelled rows: 301 needed")
    assert not waiting["promoted"]

    kept = run(live_promotion_enabled=False)
    comparison = kept.challenger
    assert (comparison["version"], comparison["champion_version"]) == ("2", "1")
    assert comparison["metric"] == "roc_auc" and comparison["labelled_rows"] == 300
    for side in ("champion", "challenger"):  # exactly the written rows, scored by sklearn
        for name, value in expected[side].items():
            assert comparison[side][name] == pytest.approx(value), (side, name)
    assert comparison["decision"].startswith("better (roc_auc")
    assert "on 300 live labelled rows" in comparison["decision"]
    assert "MLOPS_LIVE_PROMOTION_ENABLED=false" in comparison["decision"]
    assert comparison["promote"] and not comparison["promoted"]
    registry = current_stack().registry
    assert version_of(registry.champion()) == "1" and version_of(registry.challenger()) == "2"
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    newest = store.runs(settings.model_name)[0]
    assert newest.challenger == comparison  # stored as the flow returned it
    logged = mlflow.get_run(newest.mlflow_run_id).data
    assert logged.metrics["live.challenger.roc_auc"] == pytest.approx(
        expected["challenger"]["roc_auc"]
    )
    assert logged.metrics["live.labelled_rows"] == 300
    assert logged.tags["challenger.version"] == "2"
    listing = CliRunner(env={"COLUMNS": "220"}).invoke(app, ["models"], catch_exceptions=False)
    roc_auc = f"roc_auc {expected['challenger']['roc_auc']:.4f} vs "
    roc_auc += f"{expected['champion']['roc_auc']:.4f}"
    assert f"live (monitor run {newest.id}): v2 vs champion v1 on 300 labelled rows, " in (
        listing.output
    )
    assert roc_auc in listing.output

    promoted = run().challenger
    assert promoted["promoted"] and promoted["decision"].endswith("v2 promoted to champion")
    assert version_of(registry.champion()) == "2"
    assert registry.challenger() is None  # one version, one role
    tags = registry.version("2").tags
    assert tags["gate.decision"] == GateOutcome.PROMOTED
    assert tags["gate.reason"].startswith("better (roc_auc")
    assert tags["gate.reason"].endswith("on 300 live labelled rows")
    assert tags["gate.evaluation_data"].startswith("live: 300 labelled rows")
    assert float(tags["gate.candidate_score"]) == pytest.approx(expected["challenger"]["roc_auc"])
    assert tags["gate.compared_with"] == "v1"
    assert tags["mlops.previous_champion"] == "1"  # a rollback restores v1
    assert refused.startswith("tie (")  # the train gate's reason is replaced by the live one
    info = registry.champion_info()
    assert info.how == "promoted by the gate" and info.previous == "1"
    [announced] = [r for r in received if "live promotion" in r["text"]]
    assert announced["text"].startswith("live promotion: v2 replaces v1 as champion: better")
    assert announced["labelled_rows"] == 300

    # the next run: v2 is champion, no challenger is left to compare
    assert run().challenger is None
