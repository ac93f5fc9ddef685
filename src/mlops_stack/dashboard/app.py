"""The dashboard's entry script (`mlops serve dashboard`): filters, then the chosen page.

Streamlit runs this file on every interaction: it draws the sidebar filters every page honours
and hands over to one page of ``views/`` (``st.navigation``; each page has its own URL, e.g.
``/dashboard/drift``). Every figure comes from the registry or the monitoring database, read
through ``dashboard.cache``; an empty store says what would fill it.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mlops_stack.dashboard import cache, filters

VIEWS = Path(__file__).parent / "views"
PAGES = (
    ("overview.py", "Overview", ":material/monitor_heart:", "overview"),
    ("drift.py", "Drift", ":material/waves:", "drift"),
    ("quality.py", "Model quality", ":material/target:", "quality"),
    ("models.py", "Models", ":material/inventory_2:", "models"),
    ("alerts.py", "Alerts", ":material/notifications:", "alerts"),
)


def version_choices() -> list[str]:
    """The registry's version numbers for the filter; none when the registry cannot be read."""
    try:
        frame = cache.versions()
    except Exception:  # the pages say the registry is down; the filter just offers "all"
        return []
    return [] if frame.empty else list(frame["version"])


def main() -> None:
    settings = cache.settings()
    st.set_page_config(
        page_title=f"mlops-stack · {settings.model_name}",
        layout="wide",
    )
    pages = [
        st.Page(VIEWS / file, title=title, icon=icon, url_path=path, default=path == "overview")
        for file, title, icon, path in PAGES
    ]
    page = st.navigation(pages, position="top")
    filters.sidebar(version_choices())
    st.sidebar.caption(f"Model `{settings.model_name}` · alias `{settings.model_alias}`")
    page.run()


main()
