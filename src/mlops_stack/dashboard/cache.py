"""The pages' reads, cached for a few seconds: one place decides how fresh a figure is.

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

from mlops_stack.dashboard import queries, replicas, slo
from mlops_stack.registry import ChampionInfo
from mlops_stack.settings import Settings, get_settings
from mlops_stack.stack import Stack

FAST = 10
SLOW = 30


@st.cache_resource
def stack() -> Stack:
    """The dashboard process's composition root: one registry client and one database pool,
    shared by every session. On a fresh stack the dashboard may start before anything has
    written: the monitoring database migrates itself on the first read, so an empty store reads
    as "no data yet", not as "no such table"."""
    return Stack(get_settings())


def settings() -> Settings:
    return stack().settings


def _scope(model_name: str, since: datetime | None, version: str | None) -> queries.Scope:
    return queries.Scope(model_name, since, version)


@st.cache_data(ttl=SLOW, show_spinner=False)
def versions() -> pd.DataFrame:
    return queries.model_versions(stack())


@st.cache_data(ttl=SLOW, show_spinner=False)
def champion() -> ChampionInfo | None:
    return queries.champion(stack())


@st.cache_data(ttl=FAST, show_spinner=False)
def live_comparison(model_name: str) -> queries.LiveComparison | None:
    return queries.live_comparison(stack(), model_name)


@st.cache_data(ttl=FAST, show_spinner=False)
def shadow_rows(model_name: str, version: str) -> int:
    return queries.shadow_rows(stack(), model_name, version)


@st.cache_data(ttl=FAST, show_spinner=False)
def runs(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    return queries.monitor_runs(stack(), _scope(model_name, since, version))


@st.cache_data(ttl=SLOW, show_spinner=False)
def feature_drift(run_id: int) -> pd.DataFrame:
    return queries.feature_drift(stack(), run_id)  # a stored run never changes


@st.cache_data(ttl=SLOW, show_spinner=False)
def run_data_quality(run_id: int) -> list[dict[str, Any]]:
    return queries.run_data_quality(stack(), run_id)  # a stored run never changes


@st.cache_data(ttl=FAST, show_spinner=False)
def open_alerts(model_name: str) -> pd.DataFrame:
    return queries.open_alerts(stack(), model_name)


@st.cache_data(ttl=FAST, show_spinner=False)
def alert_history(model_name: str, since: datetime | None) -> pd.DataFrame:
    return queries.alert_history(stack(), _scope(model_name, since, None))


@st.cache_data(ttl=FAST, show_spinner=False)
def traffic(model_name: str, since: datetime | None, version: str | None) -> dict[str, int]:
    return queries.traffic(stack(), _scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def latency(
    model_name: str, since: datetime | None, version: str | None
) -> dict[str, float] | None:
    return queries.latency(stack(), _scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def error_rate(api_url: str | None, prometheus_url: str | None) -> replicas.ErrorRate:
    return replicas.error_rate(api_url, prometheus_url)


@st.cache_data(ttl=FAST, show_spinner=False)
def service_level(prometheus_url: str) -> slo.ServiceLevel:
    return slo.read(prometheus_url)


@st.cache_data(ttl=FAST, show_spinner=False)
def labelled(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    return queries.labelled(stack(), _scope(model_name, since, version))


@st.cache_data(ttl=SLOW, show_spinner=False)
def current_values(
    model_name: str, start: datetime | None, end: datetime | None, feature: str
) -> pd.Series:
    return queries.current_values(stack(), model_name, start, end, feature)


@st.cache_data(ttl=SLOW, show_spinner=False)
def reference_values(version: str, feature: str) -> pd.Series:
    return queries.reference_values(stack(), version, feature)


@st.cache_data(ttl=SLOW, show_spinner=False, max_entries=4)
def report_html(report_uri: str) -> str:
    return queries.report_html(stack(), report_uri)


def clear() -> None:
    """After an action (retrain, rollback) the next render must read the stores afresh."""
    st.cache_data.clear()
