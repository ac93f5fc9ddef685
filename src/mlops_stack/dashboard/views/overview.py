"""Overview: is the champion healthy right now, and how much is it used.

The champion (version, what it predicts, since when, the holdout metrics of its task), the
latest monitor run's status with its reason, open alerts, traffic, latency and the predictor's
error rate.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mlops_stack.dashboard import cache, filters, widgets
from mlops_stack.names import Task, quality_metrics

settings = cache.settings()
chosen = filters.current()
st.title("Overview")
st.caption(f"Model `{settings.model_name}` · {filters.describe(chosen)}")


def champion_section() -> None:
    st.subheader("Champion")
    info = widgets.read("MLflow registry", cache.champion)
    versions = widgets.model_versions()
    if versions is None:
        return
    if info is None:
        st.warning(
            f"No version carries the alias '{settings.model_alias}': the gate has not "
            "promoted one (`mlops models` shows why)."
        )
        return
    row = versions[versions["version"] == info.version].iloc[0]
    task = Task(row.get("task") or Task.CLASSIFICATION)
    metrics = quality_metrics(task)
    cols = st.columns(2 + len(metrics))
    cols[0].metric("Champion version", f"v{info.version}")
    cols[1].metric("Task", str(task), help="from the version's mlops.task tag or its schema")
    for col, metric in zip(cols[2:], metrics, strict=True):
        value = row.get(metric)
        col.metric(f"Holdout {metric}", "n/a" if pd.isna(value) else f"{value:.3f}")
    st.caption(
        f"Champion since {filters.local_text(info.since)} ({info.how}) · "
        f"candidate {row['candidate']}"
    )


def status_section() -> None:
    st.subheader("Status")
    runs = widgets.read(
        "Monitoring database", lambda: cache.runs(settings.model_name, chosen.since, chosen.version)
    )
    alerts = widgets.read("Monitoring database", lambda: cache.open_alerts(settings.model_name))
    if runs is None or alerts is None:
        return
    if runs.empty:
        widgets.no_data("no monitor run in this window", widgets.MONITOR_HINT)
    else:
        last = runs.iloc[-1]
        st.markdown(widgets.status_line(last["status"], last["reason"]))
        st.caption(
            f"Latest monitor run #{last['id']} at {filters.local_text(last['started_at'])}, "
            f"{last['window_rows']} rows in its window"
        )
    st.metric("Open alerts", len(alerts))
    if not alerts.empty:
        st.table(filters.localise(alerts, ["opened_at", "last_seen_at"]))


def traffic_section() -> None:
    st.subheader("Traffic")
    counts = widgets.read(
        "Monitoring database",
        lambda: cache.traffic(settings.model_name, chosen.since, chosen.version),
    )
    if counts is None:
        return
    cols = st.columns(5)
    cols[0].metric("Predictions, last hour", counts["last_hour"])
    cols[1].metric("Predictions, last day", counts["last_day"])
    cols[2].metric(f"Predictions, {chosen.window.lower()}", counts["window"])
    if not counts["total"]:
        widgets.no_data("no logged prediction", widgets.TRAFFIC_HINT)
        return
    timing = cache.latency(settings.model_name, chosen.since, chosen.version)
    if timing is None:
        cols[3].metric("Latency p50 / p95", "n/a", help="no prediction in this window")
    else:
        cols[3].metric(
            "Latency p50 / p95",
            f"{timing['p50_ms']:.1f} / {timing['p95_ms']:.1f} ms",
            help=f"model time per request, over {timing['rows']} logged rows",
        )
    error_rate(cols[4])


def error_rate(col: DeltaGenerator) -> None:
    """Failed requests leave no logged row: the predictor's own counters say how many failed."""
    if not settings.dashboard_api_url:
        col.metric("Error rate", "n/a", help="set MLOPS_DASHBOARD_API_URL to read /metrics")
        return
    try:
        rate = cache.error_rate(settings.dashboard_api_url)
    except Exception as exc:  # the predictor is down or unreachable
        col.metric("Error rate", "n/a", help=f"predictor /metrics unreachable: {exc}")
        return
    col.metric(
        "Error rate (5xx)",
        f"{rate['rate']:.2%}",
        help=f"{rate['errors']:.0f} of {rate['requests']:.0f} /predict requests since "
        "the predictor started",
    )


champion_section()
status_section()
traffic_section()
