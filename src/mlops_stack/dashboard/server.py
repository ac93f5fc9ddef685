"""The dashboard's ASGI app, which ``mlops serve dashboard`` runs: Streamlit plus the landing page.

``streamlit run`` finds the ``st.App`` below and serves it with uvicorn: the pages of ``app.py``
exactly as a plain ``streamlit run app.py`` would (base path, websocket, health), and next to
them the routes of :mod:`mlops_stack.dashboard.landing` under the same base path
(``/dashboard/status``, ``/dashboard/status.json``). One process, no extra service: the landing
page reuses the dashboard's access to the registry and the monitoring database.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit import config

from mlops_stack.dashboard import landing

# `streamlit run` has read its flags (--server.baseUrlPath) before it imports this module
app = st.App(
    Path(__file__).with_name("app.py"),
    routes=landing.routes(str(config.get_option("server.baseUrlPath") or "")),
)
