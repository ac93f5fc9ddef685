"""The live comparison on PostgreSQL, and the monitor flow that acts on it.

The rows-compared tests of tests/unit/flows/test_challenger.py run here again against a real
PostgreSQL (imported, with this module's ``store``); the flow test scores a champion and a
challenger on the same live rows and promotes a live winner."""

from __future__ import annotations

import mlflow
import pytest

from mlops_stack.names import GateOutcome
from tests.unit.flows.test_challenger import (  # noqa: F401 (re-run on PostgreSQL)
    test_a_regressors_pairs_are_numbers_without_probabilities,
    test_shadow_pairs_are_the_labelled_window_rows_both_versions_answered,
    test_the_latest_comparison_is_the_newest_run_that_stored_one,
)


@pytest.fixture
def store(postgres_url):
    """A migrated monitoring database on the test PostgreSQL."""
    from tests.support.monitoring import Monitoring

    db = Monitoring(postgres_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.mark.timeout(600)
def test_monitor_compares_on_the_same_rows_and_promotes_a_live_winner(
    prefect_server, stack, webhook
):
    """Three runs on one window: too few rows needed -> stored, no decision; promotion off ->
    stored, kept; on -> the challenger is champion, the decision recorded and announced."""
    from typer.testing import CliRunner

    from mlops_stack.cli import app
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.registry import version_of
    from mlops_stack.stack import current_stack, install
    from tests.support.monitoring import Monitoring
    from tests.support.shadow import champion_and_challenger, expected_figures, log_shadow_traffic

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

    def run(min_labelled: int = 200, enabled: str = "true"):
        """A monitor run under these live promotion settings (the defaults: 200, true): not a
        run's parameters, the run reads them from its settings."""
        stack(live_promotion_min_labelled=str(min_labelled), live_promotion_enabled=enabled)
        install(None)  # `mlops models` below installs a stack of the settings it started with
        return monitor_flow()

    waiting = run(min_labelled=301).challenger
    assert waiting["labelled_rows"] == 300 and waiting["shadow_rows"] == 300
    assert waiting["decision"].startswith("no decision on 300 live labelled rows: 301 needed")
    assert not waiting["promoted"]

    kept = run(enabled="false")
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
    store = Monitoring(settings.resolved_monitoring_db_url)
    newest = store.monitor_store.runs(settings.model_name)[0]
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
