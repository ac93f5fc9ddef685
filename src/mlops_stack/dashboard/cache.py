"""The pages' reads, cached for a few seconds: one place decides how fresh a figure is.

Streamlit reruns a page on every click; without a cache each rerun would query MLflow and the
database again. The TTLs are short so a page a person keeps open follows the stack: monitor
runs and traffic every ``FAST`` seconds, registry reads every ``SLOW`` (they are slower and
change rarely). Arguments are plain values (not objects) so that they hash cheaply; the time
window's start is rounded to the minute by ``filters`` so that reruns hit the cache.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from mlops_stack.dashboard import queries
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.settings import Settings, get_settings

FAST = 10
SLOW = 30


@st.cache_resource
def store() -> MonitoringDB:
    """One engine (connection pool) per dashboard process, shared by every session.

    Migrated here too: on a fresh stack the dashboard may start before anything has written,
    and an empty store must read as "no data yet", not as "no such table". A failure is not
    cached, so the next rerun tries again.
    """
    settings = get_settings()
    settings.prepare_environment()
    database = MonitoringDB(settings.resolved_monitoring_db_url)
    database.migrate()
    return database


def settings() -> Settings:
    return get_settings()


def _scope(model_name: str, since: datetime | None, version: str | None) -> queries.Scope:
    return queries.Scope(model_name, since, version)


@st.cache_data(ttl=SLOW, show_spinner=False)
def versions() -> pd.DataFrame:
    return queries.model_versions(get_settings())


@st.cache_data(ttl=SLOW, show_spinner=False)
def champion() -> queries.ChampionInfo | None:
    return queries.champion(get_settings())


@st.cache_data(ttl=FAST, show_spinner=False)
def runs(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    return queries.monitor_runs(store(), _scope(model_name, since, version))


@st.cache_data(ttl=SLOW, show_spinner=False)
def feature_drift(run_id: int) -> pd.DataFrame:
    return queries.feature_drift(store(), run_id)  # a stored run never changes


@st.cache_data(ttl=FAST, show_spinner=False)
def open_alerts(model_name: str) -> pd.DataFrame:
    return queries.open_alerts(store(), model_name)


@st.cache_data(ttl=FAST, show_spinner=False)
def alert_history(model_name: str, since: datetime | None) -> pd.DataFrame:
    return queries.alert_history(store(), _scope(model_name, since, None))


@st.cache_data(ttl=FAST, show_spinner=False)
def traffic(model_name: str, since: datetime | None, version: str | None) -> dict[str, int]:
    return queries.traffic(store(), _scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def latency(model_name: str, since: datetime | None, version: str | None) -> dict | None:
    return queries.latency(store(), _scope(model_name, since, version))


@st.cache_data(ttl=FAST, show_spinner=False)
def error_rate(api_url: str) -> dict[str, float]:
    return queries.error_rate(api_url)


@st.cache_data(ttl=FAST, show_spinner=False)
def labelled(model_name: str, since: datetime | None, version: str | None) -> pd.DataFrame:
    return queries.labelled(store(), _scope(model_name, since, version))


@st.cache_data(ttl=SLOW, show_spinner=False)
def current_values(
    model_name: str, start: datetime | None, end: datetime | None, feature: str
) -> pd.Series:
    return queries.current_values(store(), model_name, start, end, feature)


@st.cache_data(ttl=SLOW, show_spinner=False)
def reference_values(version: str, feature: str) -> pd.Series:
    return queries.reference_values(get_settings(), version, feature)


@st.cache_data(ttl=SLOW, show_spinner=False, max_entries=4)
def report_html(report_uri: str) -> str:
    return queries.report_html(get_settings(), report_uri)


def clear() -> None:
    """After an action (retrain, rollback) the next render must read the stores afresh."""
    st.cache_data.clear()
