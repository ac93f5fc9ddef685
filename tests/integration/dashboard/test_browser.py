"""`mlops serve dashboard` on an empty embedded stack, in a real browser (Debian's Chromium).

The empty stack is the first thing a new user sees: every page must say what is missing and
what would produce it, with no error anywhere. This runs the real command (Streamlit server,
websocket, the base path nginx uses) rather than AppTest, so what the browser loads is what a
person gets. The seeded pages are tested the same way against the compose stack (tests/e2e).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.browser import VIEWER_ZONE, browser_page, open_page, screenshot
from tests.support.servers import free_port, server_process

PAGES = (("", "Overview"), ("drift", "Drift"), ("quality", "Model quality"),
         ("models", "Models"), ("alerts", "Alerts"))  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).text == "ok"
    except httpx.HTTPError:
        return False


@pytest.fixture
def served_dashboard(stack, tmp_path) -> Iterator[str]:
    """The dashboard under /dashboard/ on a loopback port, reading this test's empty stores."""
    stack()
    port = free_port()
    base = f"http://127.0.0.1:{port}/dashboard"
    command = [sys.executable, "-m", "mlops_stack.cli", "serve", "dashboard",
               "--port", str(port), "--base-path", "dashboard"]  # fmt: skip
    with server_process(
        command, tmp_path / "dashboard.log", lambda: _healthy(f"{base}/_stcore/health"),
        "the dashboard to answer", 60, env=dict(os.environ),
    ):  # fmt: skip
        yield base


def test_every_page_of_an_empty_stack_says_no_data_yet_in_a_browser(served_dashboard):
    with browser_page() as page:
        for path, heading in PAGES:
            open_page(page, served_dashboard, path, heading)
            notices = page.get_by_text("No data yet:")
            expect(notices.first).to_be_visible()
            for text in notices.all_inner_texts():
                assert "To produce it:" in text, (heading, text)
            if not path:
                expect(page.get_by_text(f"Times in {VIEWER_ZONE}")).to_be_visible()
                screenshot(page, "empty-overview")
