"""Small pieces every page uses: the "no data yet" notice, store outages, status badges.

One wording for the empty states, so a person learns once what fills each store; and one way
to say that a store is down, so a page shows what it can instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import streamlit as st

from mlops_stack.dashboard import cache, queries
from mlops_stack.names import MonitorStatus, Task

T = TypeVar("T")

STATUS_ICON: dict[str, str] = {
    MonitorStatus.OK: "🟢",
    MonitorStatus.WARNING: "🟡",
    MonitorStatus.DRIFT: "🟠",
    MonitorStatus.DEGRADED: "🔴",
    MonitorStatus.SKIPPED: "⚪",
}
STATUS_COLOUR: dict[str, str] = {
    MonitorStatus.OK: "#2e7d32",
    MonitorStatus.WARNING: "#f9a825",
    MonitorStatus.DRIFT: "#ef6c00",
    MonitorStatus.DEGRADED: "#c62828",
    MonitorStatus.SKIPPED: "#9e9e9e",
}
TRAFFIC_HINT = "run `mlops demo`, or send traffic to /api/predict (`mlops simulate`)"
MONITOR_HINT = (
    "the worker runs the monitor deployment every MLOPS_MONITOR_INTERVAL_MINUTES once "
    "predictions are logged; `mlops monitor` runs it by hand"
)
TRAIN_HINT = "`mlops train` (or the worker's bootstrap run in the compose stack) registers one"
LABEL_HINT = (
    "post true labels to /api/feedback (`mlops simulate` does, unless --no-labels); "
    "the next monitor run scores them"
)


def no_data(what: str, produced_by: str) -> None:
    """The empty state: what is missing and what would produce it."""
    st.info(f"No data yet: {what}. To produce it: {produced_by}.", icon="ℹ️")


def read(what: str, call: Callable[[], T]) -> T | None:
    """``call()``, or None after saying on the page that ``what`` cannot be read right now."""
    try:
        return call()
    except Exception as exc:  # any store outage: say which store, keep the rest of the page
        st.error(f"{what} unavailable: {exc}")
        return None


def model_versions() -> pd.DataFrame | None:
    """The registry's versions; None after the page said why there are none to show."""
    versions = read("MLflow registry", cache.versions)
    if versions is not None and versions.empty:
        no_data("the registry has no model version", TRAIN_HINT)
        return None
    return versions


def status_line(status: str, reason: str) -> str:
    """A stored run's status (its text, as the database holds it) with its icon and reason."""
    icon = STATUS_ICON.get(status, "")
    return f"{icon} **{status}** — {reason}"


def judged_model(version: str | None) -> tuple[str | None, Task]:
    """The version a page judges (the filter's, else the champion) and what it predicts.

    The task decides which figures a page shows (RMSE and MAE, or accuracy and F1); it comes
    from the registry (the version's ``mlops.task`` tag or its schema). With no such version,
    or the registry unreadable (the page says so), the page shows classification figures.
    """
    versions = read("MLflow registry", cache.versions)
    if versions is None:
        return version, Task.CLASSIFICATION
    if version is None:
        info = read("MLflow registry", cache.champion)
        version = info.version if info is not None else None
    return version, queries.task_in(versions, version) or Task.CLASSIFICATION
