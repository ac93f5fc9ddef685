"""What the dashboard shows, read from the stack's stores as plain frames and dicts.

Kept apart from the Streamlit page so the reads are testable without a browser and cached in
one place. Nothing here invents a figure: an empty store gives an empty frame, and the page
says what would fill it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select

from mlops_stack import registry
from mlops_stack.logstore import LogStore
from mlops_stack.logstore.db import PREDICTIONS
from mlops_stack.logstore.results import ResultStore
from mlops_stack.settings import Settings

RUN_COLUMNS = (
    "id", "started_at", "model_version", "status", "reason", "window_rows", "analysed_rows",
    "drift_share", "labelled_rows", "accuracy", "f1", "roc_auc", "sample_note", "report_uri",
)  # fmt: skip
ALERT_COLUMNS = ("id", "condition", "reason", "opened_at", "last_seen_at")


def model_versions(settings: Settings) -> pd.DataFrame:
    """Registry versions, newest first, with aliases, holdout metrics and the gate's decision."""
    registry.use_tracking(settings)
    rows = registry.describe_versions(registry.client_for(settings), settings.model_name)
    frame = pd.DataFrame([asdict(row) for row in rows])
    if frame.empty:
        return frame
    metrics = pd.json_normalize(frame.pop("metrics").tolist())
    frame["aliases"] = frame["aliases"].map(", ".join)
    return pd.concat([frame, metrics], axis=1)


def monitor_runs(store: LogStore, model_name: str, limit: int = 200) -> pd.DataFrame:
    """Monitor runs of one model, oldest first (one chart point each)."""
    runs = ResultStore(store).runs(model_name=model_name, limit=limit)
    frame = pd.DataFrame([{c: getattr(run, c) for c in RUN_COLUMNS} for run in runs])
    frame = frame.reindex(columns=list(RUN_COLUMNS))
    return frame.sort_values("started_at").reset_index(drop=True)


def open_alerts(store: LogStore, model_name: str) -> pd.DataFrame:
    """Alerts of one model whose condition still holds."""
    alerts = [a for a in ResultStore(store).alerts(state="open") if a.model_name == model_name]
    frame = pd.DataFrame([{c: getattr(a, c) for c in ALERT_COLUMNS} for a in alerts])
    return frame.reindex(columns=list(ALERT_COLUMNS))


def traffic(store: LogStore, model_name: str, now: datetime | None = None) -> dict[str, int]:
    """Logged prediction rows of one model: last hour, last day, all time (one scan)."""
    now = now or datetime.now(UTC)
    created = PREDICTIONS.c.created_at
    query = select(
        func.count().filter(created >= now - timedelta(hours=1)).label("last_hour"),
        func.count().filter(created >= now - timedelta(days=1)).label("last_day"),
        func.count().label("total"),
    ).where(PREDICTIONS.c.model_name == model_name)
    with store.engine.connect() as connection:
        return dict(connection.execute(query).mappings().one())
