"""What the dashboard shows, read through the process's stack as plain frames and dicts.

Kept apart from the Streamlit pages so the reads are testable without a browser and cached in
one place (``dashboard.cache``). The SQL lives in the monitoring database's own class; this
module shapes its answers for the pages. Nothing here invents a figure: an empty store gives an
empty frame, and the page says what would fill it. Every read of the monitoring database takes
a :class:`Scope` (model, time window, model version): the filters all pages honour.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import httpx
import pandas as pd

from mlops_stack import modelstore
from mlops_stack.monitoring_db import Scope
from mlops_stack.registry import ChampionInfo
from mlops_stack.stack import Stack

__all__ = ["ChampionInfo", "Scope"]

FEATURE_ROWS = 5_000  # a feature's current distribution from at most this many rows


def model_versions(stack: Stack) -> pd.DataFrame:
    """Registry versions, newest first, with aliases, holdout metrics and the gate's decision."""
    frame = pd.DataFrame([asdict(row) for row in stack.registry.describe()])
    if frame.empty:
        return frame
    metrics = pd.json_normalize(frame.pop("metrics").tolist())
    frame["aliases"] = frame["aliases"].map(", ".join)
    return pd.concat([frame, metrics], axis=1)


def champion(stack: Stack) -> ChampionInfo | None:
    """The version holding the served alias, and when and how it got it (its tags say)."""
    return stack.registry.champion_info()


def monitor_runs(stack: Stack, scope: Scope, limit: int = 500) -> pd.DataFrame:
    """Monitor runs in scope, oldest first (one chart point each)."""
    return stack.monitoring.monitor_runs_frame(scope, limit)


def feature_drift(stack: Stack, run_id: int) -> pd.DataFrame:
    """One run's per-feature drift, most drifted first (severity: log10 past its threshold).

    P-values (drift = small) and distances (drift = large) are ranked on one scale by the
    monitor's own :attr:`FeatureDrift.severity`, so the top row is the most shifted feature.
    """
    from mlops_stack.monitoring.checks import FeatureDrift

    frame = stack.monitoring.feature_drift_frame(run_id)
    frame["severity"] = [
        FeatureDrift(*row).severity
        for row in frame[["feature", "kind", "method", "threshold", "score", "drifted"]].itertuples(
            index=False
        )
    ]
    return frame.sort_values(["severity", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )


def open_alerts(stack: Stack, model_name: str) -> pd.DataFrame:
    """Alerts of one model whose condition still holds (whatever the time filter says)."""
    return stack.monitoring.open_alerts_frame(model_name)


def alert_history(stack: Stack, scope: Scope) -> pd.DataFrame:
    """Every alert of the model still seen since ``scope.since``, newest first."""
    return stack.monitoring.alert_history_frame(scope)


def traffic(stack: Stack, scope: Scope) -> dict[str, int]:
    """Logged prediction rows: last hour, last day, in the chosen window, all time."""
    return stack.monitoring.traffic(scope)


def latency(stack: Stack, scope: Scope) -> dict[str, float] | None:
    """p50/p95 of the logged model latency in scope; None without rows."""
    return stack.monitoring.latency(scope)


def labelled(stack: Stack, scope: Scope) -> pd.DataFrame:
    """Predictions in scope that have a true label: ``created_at``, ``prediction``, ``label``."""
    return stack.monitoring.labelled_frame(scope)


def confusion(labelled_rows: pd.DataFrame) -> pd.DataFrame:
    """Counts of (true label, prediction); rows: labels, columns: predictions."""
    if labelled_rows.empty:
        return pd.DataFrame()
    return pd.crosstab(
        labelled_rows["label"].rename("true label"),
        labelled_rows["prediction"].rename("predicted"),
    )


def current_values(
    stack: Stack, model_name: str, start: datetime | None, end: datetime | None, feature: str
) -> pd.Series:
    """One feature's logged values in a monitor run's window [start, end] (newest
    FEATURE_ROWS rows): what the run compared with the reference."""
    return stack.monitoring.feature_values(model_name, start, end, feature, FEATURE_ROWS)


def reference_values(stack: Stack, version: str, feature: str) -> pd.Series:
    """One feature of the reference sample logged with ``version`` (what drift compares with)."""
    mv = stack.registry.version(version)
    return modelstore.load_reference(str(mv.run_id), columns=[feature])[feature]


def report_html(stack: Stack, report_uri: str) -> str:
    """The Evidently HTML report a monitor run logged to MLflow."""
    return stack.registry.artifact_text(report_uri)


def error_rate(api_url: str, timeout: float = 3.0) -> dict[str, float]:
    """Requests to /predict* answered with 5xx, from the predictor's /metrics (since it started).

    The predictor logs only the predictions it made; a failed request leaves no row, so its
    Prometheus counters are the one place that counts failures.
    """
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{api_url.rstrip('/')}/metrics", timeout=timeout)
    answer.raise_for_status()
    total = errors = 0.0
    for family in text_string_to_metric_families(answer.text):
        if family.name != "mlops_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and "predict" in sample.labels.get("route", ""):
                total += sample.value
                errors += sample.value if sample.labels.get("status", "").startswith("5") else 0
    return {"requests": total, "errors": errors, "rate": errors / total if total else 0.0}
