"""The dashboard in a real browser, through nginx, on a stack seeded with real runs.

What a person checks on each page: the champion's version, a drift point above the threshold
after drifted traffic, the shifted feature at the top of the per-feature list, labels scored
against the holdout, the drift alert, and the retrain button starting a flow run that Prefect
then runs. The seed is this module's own (labelled clean traffic and a monitor run, drifted
traffic and another), so the file stands alone; it is named to run after test_stack.py, whose
traffic it must not disturb. Screenshots of every page go to MLOPS_SCREENSHOT_DIR.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sklearn.datasets import load_breast_cancer

from mlops_stack.synthetic import RowGenerator
from tests.e2e.conftest import psql
from tests.e2e.test_stack import MODEL, _flow_run_state, _run_deployment
from tests.support.browser import VIEWER_ZONE, browser_page, open_page, screenshot, settled
from tests.support.servers import wait_for

DRIFT_THRESHOLD = 0.3  # MLOPS_DRIFT_SHARE's default; the compose stack keeps it


# A broad shift: mean radius by 3 std moves the size features with it (corr > 0.9), and with
# them most of the table: past the 0.3 drift share, so the pages show a drift status.
SHIFTED, SHIFT = "mean radius", 3.0


def most_moved() -> set[str]:
    """The features the shift moves by at least 90 % of its size: the top of the drift table
    (ranked by how far each moved) must be one of them."""
    table = load_breast_cancer(as_frame=True).frame
    moved = SHIFT * RowGenerator.fit(table, "target").correlation(SHIFTED)
    return set(moved[moved >= 0.9 * SHIFT].index)


def _simulate(base_url: str, cwd: Path, rows: int, *extra: str) -> int:
    """Send real requests through nginx with `mlops simulate`; wait until PostgreSQL has them.

    Returns how many carried a label (`mlops simulate` labels the fresh rows drawn from the
    holdout only, about a fifth, and says how many)."""
    before = int(psql("SELECT count(*) FROM predictions"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    sent = subprocess.run(
        [sys.executable, "-m", "mlops_stack.cli", "simulate", "--url", f"{base_url}/api",
         "--rows", str(rows), "--rate", "0", *extra],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert f"{rows} answered" in sent.stdout, sent.stdout
    wait_for(
        lambda: int(psql("SELECT count(*) FROM predictions")) >= before + rows,
        timeout=120,
        what=f"{rows} new prediction rows in PostgreSQL",
    )
    labelled = re.search(r"labels accepted (\d+)", sent.stdout)
    return int(labelled[1]) if labelled else 0


@pytest.fixture(scope="module")
def seeded(http: httpx.Client, base_url: str, tmp_path_factory) -> dict[str, str]:
    """Clean labelled traffic and a monitor run, then drifted traffic and another run."""
    cwd = tmp_path_factory.mktemp("simulate")
    labelled = _simulate(base_url, cwd, 600, "--seed", "11")
    assert labelled >= 100  # a fifth of 600: enough for the quality page's figures
    wait_for(
        lambda: int(psql("SELECT count(*) FROM feedback")) >= labelled,
        timeout=120,
        what="the labels in PostgreSQL",
    )
    _run_deployment(http, "monitor/monitor")
    _simulate(
        base_url, cwd, 600, "--no-labels", "--seed", "12", "--drift", f"{SHIFTED}:shift={SHIFT}"
    )
    _run_deployment(http, "monitor/monitor")
    champion = http.get(
        "/mlflow/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
    )
    assert champion.status_code == 200, champion.text
    return {
        "dashboard": f"{base_url}/dashboard",
        "champion": champion.json()["model_version"]["version"],
        "labelled": str(labelled),
    }


@pytest.fixture(scope="module")
def page(seeded) -> Page:
    with browser_page() as page:
        yield page


def metric(page: Page, label: str) -> str:
    """The value shown under a metric's label."""
    box = page.get_by_test_id("stMetric").filter(has_text=label).first
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def test_overview_names_the_champion_and_the_drift_status(page: Page, seeded):
    open_page(page, seeded["dashboard"], "", "Overview")
    assert metric(page, "Champion version") == f"v{seeded['champion']}"
    expect(page.get_by_text(f"Times in {VIEWER_ZONE}")).to_be_visible()
    expect(page.get_by_text(re.compile(r"\bdrift\b — "))).to_be_visible()  # the latest status
    assert int(metric(page, "Predictions, last hour")) >= 700
    assert int(metric(page, "Open alerts")) >= 1
    # the service level from Prometheus (compose-e2e.sh runs the observability profile)
    assert metric(page, "Availability, 1 h").endswith("%")
    screenshot(page, "overview")


def test_drift_page_shows_the_shift(page: Page, seeded):
    open_page(page, seeded["dashboard"], "drift", "Drift")
    latest = float(metric(page, "Latest drift share"))
    assert latest >= float(metric(page, "Drift threshold")) == DRIFT_THRESHOLD
    expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible()
    table = page.get_by_test_id("stTable").first
    top = table.locator("tbody tr").first
    assert top.locator("th").inner_text().strip() in most_moved()
    expect(top).to_contain_text("drifted")
    # the feature picker starts on the most drifted feature: its two distributions are drawn
    expect(page.get_by_text("Reference: the sample logged with")).to_be_visible()
    page.get_by_text("Show the report").click()
    settled(page)
    report = page.frame_locator("iframe").first
    expect(report.locator("body")).to_contain_text("Drift", timeout=120_000)
    screenshot(page, "drift")


def test_quality_page_scores_the_labels_against_the_holdout(page: Page, seeded):
    open_page(page, seeded["dashboard"], "quality", "Model quality")
    assert 0.5 < float(metric(page, "Latest accuracy")) <= 1
    expect(page.get_by_text("vs holdout").first).to_be_visible()
    matrix = page.get_by_test_id("stTable").first
    counts = [int(c) for c in matrix.locator("tbody td").all_inner_texts()]
    assert sum(counts) >= int(seeded["labelled"])  # every labelled prediction in one cell
    screenshot(page, "quality")


def test_alerts_page_lists_the_open_drift_alert(page: Page, seeded):
    open_page(page, seeded["dashboard"], "alerts", "Alerts")
    assert int(metric(page, "Open")) >= 1
    rows = page.get_by_test_id("stTable").first.locator("tbody tr")
    expect(rows.filter(has_text="drift").filter(has_text="open").first).to_be_visible()
    screenshot(page, "alerts")


def test_retrain_button_starts_a_flow_run_that_prefect_runs(page: Page, seeded, http):
    open_page(page, seeded["dashboard"], "models", "Models")
    versions = page.get_by_test_id("stTable").first
    # the row whose aliases cell (after the version) names champion: with retraining on, the
    # seed's monitor runs retrain, and kept versions mention the champion in their gate reason
    aliases = page.locator("td:nth-child(2)", has_text=re.compile(r"\bchampion\b"))
    champion_row = versions.locator("tbody tr").filter(has=aliases)
    expect(champion_row.locator("th")).to_have_text(f"v{seeded['champion']}")
    button = page.get_by_role("button", name="Start a retrain")
    expect(button).to_be_disabled()  # not before the confirmation
    page.get_by_text("Yes, start a retrain").click()
    expect(button).to_be_enabled()
    button.click()
    started = page.get_by_text("Started flow run")
    expect(started).to_be_visible()
    run_id = re.search(r"id ([0-9a-f-]{36})", started.inner_text()).group(1)
    link = page.get_by_role("link", name="Follow it in Prefect")
    expect(link).to_have_attribute("href", f"/prefect/runs/flow-run/{run_id}")
    screenshot(page, "models")
    run = http.get(f"/prefect/api/flow_runs/{run_id}")
    assert run.status_code == 200, run.text
    deployment = http.get(f"/prefect/api/deployments/{run.json()['deployment_id']}").json()
    assert deployment["name"] == "retrain" and "dashboard" in run.json()["tags"]
    # the worker executes it: the stack is quiet again when this test ends
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    state = wait_for(
        lambda: (s := _flow_run_state(http, run_id)) in final and s,
        timeout=600,
        what=f"the dashboard's retrain run {run_id} to finish",
    )
    assert state == "COMPLETED"
