"""A real browser for the dashboard tests: Debian's Chromium driven by Playwright.

Never a Playwright browser download (CI cannot reach its CDN): ``infrastructure/ci/browser.sh``
installs /usr/bin/chromium from apt. Without the background-networking flags Chromium hangs on
a machine with no internet, waiting for its own update and sync services.

Streamlit renders asynchronously over a websocket; :func:`settled` waits until the app says
its script finished (``data-test-script-state``) instead of sleeping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.support.paths import REPO

CHROMIUM = os.environ.get("MLOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("MLOPS_SCREENSHOT_DIR", REPO / "artifacts" / "screenshots"))
VIEWER_ZONE = "America/New_York"  # not the machine's UTC: the pages must follow the browser
TIMEOUT_MS = 60_000


@contextmanager
def browser_page() -> Iterator[Page]:
    """A fresh page in a headless Chromium whose viewer sits in :data:`VIEWER_ZONE`."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"no Chromium at {CHROMIUM}: run `bash infrastructure/ci/browser.sh` (as root)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1440, "height": 1100}, timezone_id=VIEWER_ZONE
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def settled(page: Page) -> None:
    """Wait until Streamlit is connected and the page's script has finished running."""
    app = page.locator('[data-testid="stApp"]')
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")


def open_page(page: Page, base: str, path: str, heading: str) -> None:
    """Go to one dashboard page by its URL ("" for the default page), wait for its title and
    a finished script, and check that nothing on it failed."""
    page.goto(f"{base.rstrip('/')}/{path}", wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    settled(page)
    no_errors(page)


def no_errors(page: Page) -> None:
    """No exception, error box or "page not found" dialog anywhere on the page."""
    for test_id in ("stException", "stAlertContentError"):
        expect(page.get_by_test_id(test_id)).to_have_count(0)
    expect(page.get_by_text("Page not found")).to_have_count(0)


def rendered(page: Page) -> None:
    """Wait until every chart has drawn and every table is built (they load lazily)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')]
                   .every(c => c.querySelector('canvas, svg'))
              && [...document.querySelectorAll('[data-testid=stTable]')]
                   .every(t => t.querySelector('table'))"""
    )


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<SCREENSHOTS>/<name>.png`` (CI keeps the folder)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Streamlit scrolls inside its main section, not the document: a "full page" shot would be
    # the viewport. Grow the viewport to the section's height for the shot, then restore it.
    size = page.viewport_size
    height = page.get_by_test_id("stMain").evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 600), 8000)})
    settled(page)
    rendered(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path
