"""The pages' reads, cached for a few seconds: one place decides how fresh a figure is.

A figure travels two hops: a view calls one of these cached reads, which asks the process's
stack (a monitoring-database store or the registry) and, where the page needs a different shape,
reshapes the answer with a function of ``queries``. Adding a figure is a store method (or a
registry call) and a cached read here.

Streamlit reruns a page on every click; without a cache each rerun would query MLflow and the
database again. The TTLs are short so a page a person keeps open follows the stack: monitor
runs and traffic every ``FAST`` seconds, registry reads every ``SLOW`` (they are slower and
change rarely). Arguments are plain values (not objects) so that they hash cheaply; the time
window's start is rounded to the minute by ``filters`` so that reruns hit the cache.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from mlops_stack import modelstore
from mlops_stack.dashboard import queries, replicas, slo
from mlops_stack.monitoring_db import Scope
from mlops_stack.registry import ChampionInfo
from mlops_stack.settings import Settings
from mlops_stack.stack import Stack, current_stack

FAST = 10
SLOW = 30
FEATURE_ROWS = 5_000  # a feature's current distribution from at most this many rows
RUN_ROWS = 500  # monitor runs a chart shows at most


def stack() -> Stack:
    """The dashboard process's one stack (registry client, database pool), shared by every
    session and by the landing page's routes (:mod:`~mlops_stack.dashboard.landing`). On a fresh
    stack the dashboard may start before anything has written: the monitoring database migrates
    itself on the first read, so an empty store reads as "no data yet", not as "no such table"."""
    return current_stack()


def settings() -> Settings:
    return stack().settings


@st.cache_data(ttl=SLOW, show_spinner=False)
def versions() -> pd.DataFrame:
    return queries.model_versions(stack())


@st.cache_data(ttl=SLOW, show_spinner=False)
def champion() -> ChampionInfo | None:
    return stack().registry.champion_info()


@st.cache_data(ttl=FAST, show_spinner=False)
def live_comparison(model_name: str) -> queries.LiveComparison | None:
    return queries.LiveComparison.of(stack().monitor_store.latest_comparison(model_name))


@st.cache_data(ttl=FAST, show_spinner=False)
def shadow_rows(model_name: str, version: str) -> int:
    return stack().dashboard_reads.shadow_rows(model_name, version)


@st.cache_data(ttl=FAST, show_spinner=False)
def runs(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    """Monitor runs in scope, oldest first, with each run's task and stored figures as columns."""
    reads, scope = stack().dashboard_reads, Scope(model_name, since, version)
    return queries.with_results(
        reads.monitor_runs_frame(scope, RUN_ROWS), reads.monitor_run_results_frame(scope, RUN_ROWS)
    )


@st.cache_data(ttl=SLOW, show_spinner=False)
def feature_drift(run_id: int) -> pd.DataFrame:
    """One run's per-feature drift, most drifted first (a stored run never changes)."""
    return queries.by_severity(stack().dashboard_reads.feature_drift_frame(run_id))


@st.cache_data(ttl=SLOW, show_spinner=False)
def run_data_quality(run_id: int) -> list[dict[str, Any]]:
    return stack().dashboard_reads.run_data_quality(run_id)  # a stored run never changes


@st.cache_data(ttl=FAST, show_spinner=False)
def open_alerts(model_name: str) -> pd.DataFrame:
    return stack().dashboard_reads.open_alerts_frame(model_name)


@st.cache_data(ttl=FAST, show_spinner=False)
def alert_history(model_name: str, since: datetime | None) -> pd.DataFrame:
    return stack().dashboard_reads.alert_history_frame(Scope(model_name, since))


@st.cache_data(ttl=FAST, show_spinner=False)
def traffic(model_name: str, since: datetime | None, version: str | None) -> dict[str, int]:
    return stack().dashboard_reads.traffic(Scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def latency(
    model_name: str, since: datetime | None, version: str | None
) -> dict[str, float] | None:
    return stack().dashboard_reads.latency(Scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def error_rate(api_url: str | None, prometheus_url: str | None) -> replicas.ErrorRate:
    return replicas.error_rate(api_url, prometheus_url)


@st.cache_data(ttl=FAST, show_spinner=False)
def service_level(prometheus_url: str) -> slo.ServiceLevel:
    return slo.read(prometheus_url)


@st.cache_data(ttl=FAST, show_spinner=False)
def labelled(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    return stack().dashboard_reads.labelled_frame(Scope(model_name, since, version))


@st.cache_data(ttl=SLOW, show_spinner=False)
def current_values(
    model_name: str, start: datetime | None, end: datetime | None, feature: str
) -> pd.Series:
    """One feature's logged values in a monitor run's window [start, end] (the newest
    FEATURE_ROWS rows): what the run compared with the reference."""
    return stack().dashboard_reads.feature_values(model_name, start, end, feature, FEATURE_ROWS)


@st.cache_data(ttl=SLOW, show_spinner=False)
def reference_values(version: str, feature: str) -> pd.Series:
    """One feature of the reference sample logged with ``version`` (what drift compares with)."""
    run_id = str(stack().registry.version(version).run_id)
    return modelstore.load_reference(run_id, columns=[feature])[feature]


@st.cache_data(ttl=SLOW, show_spinner=False, max_entries=4)
def report_html(report_uri: str) -> str:
    """The Evidently HTML report a monitor run logged to MLflow."""
    return stack().registry.artifact_text(report_uri)


def clear() -> None:
    """After an action (retrain, rollback) the next render must read the stores afresh."""
    st.cache_data.clear()
