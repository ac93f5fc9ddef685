"""Overview: is the champion healthy right now, and how much is it used.

The champion (version, what it predicts, since when, the holdout metrics of its task), the
latest monitor run's status with its reason, open alerts, traffic, latency, and the service
level: with Prometheus (profile observability) the SLO figures it records, availability and p99
over 5 min and 1 h and the burn-rate alerts; and the error rate since each replica started,
summed over every replica of the predictor (dashboard/replicas.py says how), saying which
replicas answered.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mlops_stack.dashboard import cache, filters, slo, widgets
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
    cols = st.columns(4)
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


def service_level_section() -> None:
    """Prometheus' SLO figures when it answers, and the error rate over every replica."""
    st.subheader("Service level")
    url = settings.dashboard_prometheus_url
    if url:
        try:
            level = cache.service_level(url)
        except Exception as exc:  # not started (profile off), down, or answering errors
            st.warning(
                f"Prometheus unreachable at {url} ({exc}): no SLO figures. The error rate "
                "below sums every predictor replica's own /metrics since each started. "
                "Prometheus runs in the compose profile `observability`."
            )
        else:
            slo_figures(level)
    else:
        st.caption(
            "No Prometheus configured (MLOPS_DASHBOARD_PROMETHEUS_URL; the compose profile "
            "`observability` runs one): the error rate from every predictor replica's /metrics."
        )
    error_rate(st.columns(4)[0])


def slo_figures(level: slo.ServiceLevel) -> None:
    """Availability and p99 over 5 min and 1 h against their targets, and the SLO alerts."""
    cols = st.columns(5)
    target = level.availability_target
    target_text = "no target recorded" if target is None else f"target {slo.percent(target)}"
    bound = level.latency_target_seconds
    bound_text = "no target recorded" if bound is None else f"target < {slo.milliseconds(bound)}"
    for col, window, label in ((cols[0], "5m", "5 min"), (cols[1], "1h", "1 h")):
        value = level.availability[window]
        col.metric(
            f"Availability, {label}",
            slo.percent(value),
            help=f"non-5xx share of /predict and /predict/batch answers; {target_text}"
            + ("" if value is not None else f"; no prediction request in the last {label}"),
        )
    for col, window, label in ((cols[2], "5m", "5 min"), (cols[3], "1h", "1 h")):
        value = level.p99_seconds[window]
        col.metric(
            f"p99 latency, {label}",
            slo.milliseconds(value),
            help=f"from the predictor's latency histogram; {bound_text}"
            + ("" if value is not None else f"; no prediction request in the last {label}"),
        )
    cols[4].metric("SLO alerts firing", len(level.firing))
    st.caption(
        f"Targets: availability ≥ {slo.percent(target)}, p99 < {slo.milliseconds(bound)}. "
        f"From Prometheus (`{settings.dashboard_prometheus_url}`, [/prometheus/](/prometheus/) "
        "through nginx): its recording rules over the predictor's /metrics and its burn-rate "
        "alerts (infrastructure/prometheus/rules/slo.yml)."
    )
    if level.alerts:
        listed = (f"**{a.name}** ({a.state}, {a.severity}): {a.summary}" for a in level.alerts)
        st.warning("SLO alerts: " + "; ".join(listed))


def error_rate(col: DeltaGenerator) -> None:
    """Failed requests leave no logged row: the predictor's own counters say how many failed,
    summed over every replica (Prometheus' targets, else each A record of its host)."""
    label = "Error rate (5xx)"
    if not settings.dashboard_api_url and not settings.dashboard_prometheus_url:
        col.metric(label, "n/a")
        st.caption(
            "No error rate: set MLOPS_DASHBOARD_API_URL (the predictor's URL; every replica "
            "behind its name is read) or MLOPS_DASHBOARD_PROMETHEUS_URL."
        )
        return
    try:
        rate = cache.error_rate(settings.dashboard_api_url, settings.dashboard_prometheus_url)
    except Exception as exc:  # no replica to ask: the name does not resolve, no URL works
        col.metric(label, "n/a")
        st.caption(
            f"No data: no predictor replica to read ({exc}). The counts are the replicas' own "
            "(`mlops serve api`; compose: the `api` service), from each one's start."
        )
        return
    col.metric(label, rate.shown)
    st.caption(rate.summary())


champion_section()
status_section()
traffic_section()
service_level_section()
