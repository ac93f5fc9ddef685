"""The dashboard page (`mlops serve dashboard`): is the champion healthy, is the data drifting.

Streamlit runs this file as a script on every interaction; the reads are cached for a few
seconds so a busy page does not hammer MLflow or the database. Every figure comes from the
registry or the monitoring database; an empty store says what would fill it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mlops_stack.dashboard import queries
from mlops_stack.logstore import LogStore
from mlops_stack.settings import get_settings

CACHE_SECONDS = 10
STATUS_ICON = {"ok": "🟢", "warning": "🟡", "drift": "🟠", "degraded": "🔴", "skipped": "⚪"}


@st.cache_resource
def _store() -> LogStore:
    settings = get_settings()
    settings.prepare_environment()
    return LogStore(settings.resolved_monitoring_db_url)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _versions() -> pd.DataFrame:
    return queries.model_versions(get_settings())


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _runs(model_name: str) -> pd.DataFrame:
    return queries.monitor_runs(_store(), model_name)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _alerts(model_name: str) -> pd.DataFrame:
    return queries.open_alerts(_store(), model_name)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _traffic(model_name: str) -> dict[str, int]:
    return queries.traffic(_store(), model_name)


def champion_section(versions: pd.DataFrame, alias: str) -> None:
    st.subheader("Champion")
    if versions.empty:
        st.info(
            "No data yet: the registry has no model version. `mlops train` (or the worker's "
            "bootstrap run in the compose stack) trains and registers one."
        )
        return
    served = versions[versions["aliases"].str.split(", ").map(lambda a: alias in a)]
    if served.empty:
        st.warning(f"No version carries the alias '{alias}' yet; the gate has not promoted one.")
    else:
        row = served.iloc[0]
        cols = st.columns(4)
        cols[0].metric("Version", row["version"])
        for col, metric in zip(cols[1:], ("accuracy", "f1", "roc_auc"), strict=True):
            value = row.get(metric)
            col.metric(f"Holdout {metric}", "n/a" if pd.isna(value) else f"{value:.3f}")
        st.caption(f"Registered {row['created_at']} · candidate {row['candidate']}")
    with st.expander("All versions"):
        st.dataframe(versions, hide_index=True)


def status_section(runs: pd.DataFrame, alerts: pd.DataFrame, traffic: dict[str, int]) -> None:
    st.subheader("Status")
    cols = st.columns(3)
    cols[0].metric("Predictions, last hour", traffic["last_hour"])
    cols[1].metric("Predictions, last day", traffic["last_day"])
    cols[2].metric("Open alerts", len(alerts))
    if runs.empty:
        st.info(
            "No data yet: no monitor run. The worker runs the monitor deployment on a schedule "
            "once predictions are logged; `mlops monitor` runs it by hand."
        )
        return
    last = runs.iloc[-1]
    icon = STATUS_ICON.get(last["status"], "")
    st.markdown(f"**{icon} {last['status']}** — {last['reason']}")
    st.caption(f"Last monitor run {last['started_at']}, {last['window_rows']} rows in the window")
    if not alerts.empty:
        st.dataframe(alerts, hide_index=True)


def drift_section(runs: pd.DataFrame, warning_share: float, drift_share: float) -> None:
    st.subheader("Drift share per monitor run")
    measured = runs.dropna(subset=["drift_share"])
    if measured.empty:
        st.info("No data yet: drift is measured once a monitor run has enough logged rows.")
        return
    chart = measured.set_index("started_at")[["drift_share"]]
    chart["warning threshold"] = warning_share
    chart["drift threshold"] = drift_share
    st.line_chart(chart)


def main() -> None:
    settings = get_settings()
    st.set_page_config(page_title="mlops-stack", page_icon="📈", layout="wide")
    st.title(f"mlops-stack · {settings.model_name}")
    try:
        versions = _versions()
    except Exception as exc:  # the registry is down: say so, keep the rest of the page
        st.error(f"MLflow registry unavailable: {exc}")
        versions = pd.DataFrame()
    champion_section(versions, settings.model_alias)
    try:
        runs, alerts = _runs(settings.model_name), _alerts(settings.model_name)
        traffic = _traffic(settings.model_name)
    except Exception as exc:  # the monitoring database is down
        st.error(f"Monitoring database unavailable: {exc}")
        return
    status_section(runs, alerts, traffic)
    drift_section(runs, settings.drift_warning_share, settings.drift_share)


main()
