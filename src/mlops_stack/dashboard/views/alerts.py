"""Alerts: what went wrong, when, and how long it lasted.

An alert is one row per (model, condition) while the condition persists; it resolves when a
monitor run no longer sees it. The time filter keeps alerts last seen inside the window.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mlops_stack.dashboard import cache, filters, widgets

settings = cache.settings()
chosen = filters.current()
st.title("Alerts")
st.caption(
    f"Model `{settings.model_name}` · {chosen.window.lower()} (alerts belong to the "
    "model, not to a version)"
)


def duration(delta: pd.Timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


history = widgets.read(
    "Monitoring database", lambda: cache.alert_history(settings.model_name, chosen.since)
)
if history is not None:
    if history.empty:
        widgets.no_data(
            "no alert in this window (drift or degraded quality opens one)", widgets.MONITOR_HINT
        )
    else:
        open_count = int((history["state"] == "open").sum())
        resolved = history[history["state"] == "resolved"]
        cols = st.columns(3)
        cols[0].metric("Open", open_count)
        cols[1].metric("Resolved", len(resolved))
        cols[2].metric(
            "Median time to resolve",
            duration(resolved["open_for"].median()) if len(resolved) else "n/a",
        )
        shown = filters.localise(history, ["opened_at", "last_seen_at", "resolved_at"])
        shown["state"] = shown["state"].map({"open": "🔴 open", "resolved": "🟢 resolved"})
        shown["open for"] = history["open_for"].map(duration)
        st.table(shown.drop(columns=["open_for"]).set_index("id"))
