"""The filters every page honours (time window, model version) and the viewer's time zone.

The entry script draws the filters in the sidebar once per rerun and keeps the chosen scope
in ``st.session_state``; every page reads it from there, so switching pages keeps the choice.
Timestamps are stored in UTC; the pages show them in the browser's zone (``st.context``),
in UTC when the browser did not say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

WINDOWS: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last day": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
}
DEFAULT_WINDOW = "Last 7 days"
ALL_VERSIONS = "All versions"
# Time axes of the charts: day and minute, whatever the span (Vega's default tick labels for
# runs minutes apart read ":35 :40 :45").
TIME_AXIS = alt.Axis(format="%b %d %H:%M", labelAngle=-30, tickCount=8)
_KEY = "mlops_scope"


@dataclass(frozen=True)
class Chosen:
    """What the sidebar says: the window's label and start, and a version (None: all)."""

    window: str
    since: datetime | None
    version: str | None


def window_start(label: str, now: datetime | None = None) -> datetime | None:
    """The window's start, floored to the minute so that reruns within it share cache entries."""
    span = WINDOWS[label]
    if span is None:
        return None
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    return now - span


def sidebar(versions: list[str]) -> Chosen:
    """Draw the filters; remember and return the choice."""
    st.sidebar.header("Filters")
    window = st.sidebar.selectbox(
        "Time window", list(WINDOWS), index=list(WINDOWS).index(DEFAULT_WINDOW), key="window"
    )
    version = st.sidebar.selectbox(
        "Model version",
        [ALL_VERSIONS, *versions],
        key="version",
        help="Monitor runs, traffic and labels of this version only.",
    )
    chosen = Chosen(window, window_start(window), None if version == ALL_VERSIONS else version)
    st.session_state[_KEY] = chosen
    st.sidebar.caption(f"Times in {zone()}")
    return chosen


def current() -> Chosen:
    """The scope the sidebar set in this rerun (all time, all versions before it ran)."""
    chosen = st.session_state.get(_KEY)
    return chosen if isinstance(chosen, Chosen) else Chosen("All time", None, None)


def describe(chosen: Chosen) -> str:
    version = f"v{chosen.version}" if chosen.version else "all versions"
    return f"{chosen.window.lower()}, {version}"


def zone() -> str:
    """The viewer's IANA time zone as the browser reports it; UTC when it did not."""
    try:
        return st.context.timezone or "UTC"
    except Exception:  # no browser session (a bare script run)
        return "UTC"


def local(values: pd.Series) -> pd.Series:
    """UTC timestamps as wall-clock times in the viewer's zone (charts and tables show these)."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_convert(zone()).dt.tz_localize(None)


def local_text(value: object) -> str:
    """One timestamp as text in the viewer's zone, e.g. ``2026-11-23 18:02:11 Europe/Paris``."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return "n/a"
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return f"{stamp.tz_convert(zone()):%Y-%m-%d %H:%M:%S} {zone()}"


def localise(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy of ``frame`` whose time ``columns`` read in the viewer's zone."""
    frame = frame.copy()
    for column in columns:
        if column in frame:
            frame[column] = local(frame[column])
    return frame
