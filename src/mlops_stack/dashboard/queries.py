"""The dashboard's reshaping: the stores' and the registry's answers in the shape a page shows.

``dashboard.cache`` reads the monitoring database (``DashboardReads``, ``MonitorStore``) and the
registry; what needs more than the read itself lives here, as functions of plain frames and
dicts that are testable without a browser: the registry versions with their task and holdout
figures, the champion and challenger side by side, runs joined with their stored figures and
estimates, drift ranked by severity, confusion matrices and per-class scores, error buckets.
Nothing here invents a figure: an empty frame gives an empty frame, and the page says what
would fill it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from mlops_stack import registry
from mlops_stack.monitoring.estimate import LABELLED, ROWS
from mlops_stack.monitoring_db import MonitorRunRow
from mlops_stack.names import ACCURACY, ERROR_BIAS, F1, MAE, RMSE, Task, quality_metrics
from mlops_stack.registry import version_of
from mlops_stack.stack import Stack

# Every metric a version's row may show: the classification figures, then the regression ones.
VERSION_METRICS = tuple(
    dict.fromkeys((*quality_metrics(Task.CLASSIFICATION), *quality_metrics(Task.REGRESSION)))
)


def model_versions(stack: Stack) -> pd.DataFrame:
    """Registry versions, newest first, with aliases, task, holdout metrics and the gate's
    decision. Each version shows the quality metrics of its own task (RMSE, MAE, R² for a
    regression model), as its training run logged them."""
    frame = pd.DataFrame([asdict(row) for row in stack.registry.describe()])
    if frame.empty:
        return frame
    frame.pop("metrics")  # the registry's summary knows the classification figures only
    frame["aliases"] = frame["aliases"].map(", ".join)
    by_version = {version_of(mv): mv for mv in stack.registry.versions()}
    details = [_version_details(stack, by_version[str(v)]) for v in frame["version"]]
    frame["task"] = [task for task, _ in details]
    metrics = pd.DataFrame([m for _, m in details], columns=list(VERSION_METRICS))
    return pd.concat([frame, metrics.dropna(axis=1, how="all")], axis=1)


def _version_details(stack: Stack, mv: ModelVersion) -> tuple[str, dict[str, float]]:
    """A version's task (``registry.task_of``) and the holdout figures of that task its run
    logged."""
    task = registry.task_of(mv)
    logged = stack.registry.run_metrics(mv)
    return str(task), {m: logged[m] for m in quality_metrics(task) if m in logged}


def task_in(versions: pd.DataFrame, version: str | None) -> Task | None:
    """The task of ``version`` in the versions frame; None when it is not there."""
    if version is None or versions.empty or "task" not in versions:
        return None
    found = versions.loc[versions["version"].astype(str) == str(version), "task"]
    return Task(found.iloc[0]) if len(found) else None


def holdout_of(versions: pd.DataFrame, version: str | None) -> dict[str, float]:
    """The holdout figures a version's training run logged (the metrics its row shows)."""
    if version is None or versions.empty:
        return {}
    found = versions[versions["version"].astype(str) == str(version)]
    if found.empty:
        return {}
    row = found.iloc[0]
    return {m: float(row[m]) for m in VERSION_METRICS if m in row and pd.notna(row[m])}


@dataclass(frozen=True)
class LiveComparison:
    """The newest stored champion-challenger comparison (``monitor_runs.challenger``) and the
    monitor run that made it."""

    run_id: int
    started_at: datetime
    comparison: dict[str, Any]

    @classmethod
    def of(cls, found: tuple[MonitorRunRow, dict[str, Any]] | None) -> LiveComparison | None:
        """The comparison the monitor store found (its run and the stored figures), if any."""
        if found is None:
            return None
        run, comparison = found
        return cls(run.id, run.started_at, comparison)

    def covers(self, champion: str | None, challenger: str | None) -> bool:
        """Whether it compared exactly these two versions (an older one is about others)."""
        return str(self.comparison.get("champion_version")) == str(champion) and str(
            self.comparison.get("version")
        ) == str(challenger)


def version_with_alias(versions: pd.DataFrame, alias: str) -> str | None:
    """The version whose aliases (the frame's comma-joined text) include ``alias``."""
    if versions.empty or "aliases" not in versions:
        return None
    for version, aliases in zip(versions["version"], versions["aliases"], strict=True):
        if alias in str(aliases).split(", "):
            return str(version)
    return None


def side_by_side(
    versions: pd.DataFrame,
    roles: dict[str, str | None],
    live: LiveComparison | None,
    shadow: dict[str, int | None],
) -> pd.DataFrame:
    """Champion and challenger in two columns: version, trained at, holdout figures, live
    figures on the same labelled rows (only from a comparison of exactly these two versions
    that had labelled rows: else no such line), shadow rows, and the gate's recorded decision
    and reason.

    ``roles`` maps a column ("champion", "challenger") to its version (None: no such version);
    every value is text, as the page shows it, and a figure nobody measured stays empty.
    """
    present = {role: v for role, v in roles.items() if v is not None}
    task = task_in(versions, present.get("champion") or next(iter(present.values()), None))
    metrics = quality_metrics(task or Task.CLASSIFICATION)
    compared = live is not None and live.covers(roles.get("champion"), roles.get("challenger"))
    rows = live.comparison.get("labelled_rows", 0) if live is not None and compared else 0
    table: dict[str, dict[str, str]] = {}
    for role, version in present.items():
        row = versions[versions["version"].astype(str) == version].iloc[0]
        column = {
            "version": f"v{version}",
            "trained at": str(row.get("created_at", "")),
            **{f"holdout {m}": _figure(row.get(m)) for m in metrics},
        }
        if live is not None and compared and rows:
            measured = live.comparison.get(role) or {}
            column |= {f"live {m} (same {rows} rows)": _figure(measured.get(m)) for m in metrics}
        count = shadow.get(role)
        column["shadow rows"] = "" if count is None else f"{count:,}"
        column["gate decision"] = str(row.get("decision", "") or "")
        column["gate's reason"] = str(row.get("reason", "") or "")
        table[role] = column
    return pd.DataFrame(table)


def _figure(value: Any) -> str:
    """A metric as the page shows it: four decimals; empty when not measured."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{float(value):.4f}"


def with_results(runs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus the task and every stored figure of ``results`` it does not have yet."""
    extra = [c for c in results.columns if c != "id" and c not in runs.columns]
    frame = runs.merge(results[["id", *extra]], on="id", how="left") if extra else runs.copy()
    if "metrics" not in frame:
        return frame
    stored = pd.json_normalize([m if isinstance(m, dict) else {} for m in frame["metrics"]])
    new = [c for c in stored.columns if c not in frame.columns]
    return pd.concat([frame, stored[new].set_axis(frame.index)], axis=1) if new else frame


ESTIMATED = "estimated_"  # prefix of a run's estimate as columns (with_estimates)
ESTIMATE_COLUMNS = tuple(
    ESTIMATED + key
    for key in (ACCURACY, F1, ROWS, LABELLED + ACCURACY, LABELLED + F1, LABELLED + ROWS)
)


def with_estimates(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus each run's stored estimate (its ``estimated`` JSON) as columns.

    ``estimated_accuracy``, ``estimated_f1`` and ``estimated_rows`` over the whole window, and
    ``estimated_labelled_accuracy`` ... over the labelled rows only; NaN for a run without an
    estimate (a regressor's, a skipped one, one stored before migration 0005).
    """
    stored = runs["estimated"] if "estimated" in runs else pd.Series(None, index=runs.index)
    flat = pd.json_normalize([e if isinstance(e, dict) else {} for e in stored])
    flat = flat.add_prefix(ESTIMATED).reindex(
        columns=list(ESTIMATE_COLUMNS), index=range(len(runs))
    )
    kept = runs.drop(columns=[c for c in ESTIMATE_COLUMNS if c in runs])
    return pd.concat([kept, flat.astype(float).set_axis(runs.index)], axis=1)


def by_severity(frame: pd.DataFrame) -> pd.DataFrame:
    """A run's per-feature drift, most drifted first (severity: log10 past its threshold).

    P-values (drift = small) and distances (drift = large) are ranked on one scale by the
    monitor's own :attr:`FeatureDrift.severity`, so the top row is the most shifted feature.
    """
    from mlops_stack.monitoring.drift import FeatureDrift

    frame = frame.copy()
    frame["severity"] = [
        FeatureDrift(*row).severity
        for row in frame[["feature", "kind", "method", "threshold", "score", "drifted"]].itertuples(
            index=False
        )
    ]
    return frame.sort_values(["severity", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )


def class_names(labelled_rows: pd.DataFrame) -> list[str]:
    """Every class seen as a label or a prediction, sorted as text."""
    seen = pd.concat([labelled_rows["label"], labelled_rows["prediction"]]).astype(str)
    return sorted(seen.unique())


def confusion(labelled_rows: pd.DataFrame) -> pd.DataFrame:
    """Counts of (true label, prediction); rows: labels, columns: predictions, both over every
    class seen (a class never predicted is a column of zeros), named as the model names them."""
    if labelled_rows.empty:
        return pd.DataFrame()
    classes = class_names(labelled_rows)
    return pd.crosstab(
        labelled_rows["label"].astype(str).rename("true label"),
        labelled_rows["prediction"].astype(str).rename("predicted"),
    ).reindex(index=classes, columns=classes, fill_value=0)


def per_class_scores(labelled_rows: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall and F1 of each class over the labelled rows, with its true and
    predicted row counts (``metrics.per_class_scores``; a class never predicted has precision 0)."""
    from mlops_stack import metrics  # scikit-learn, when a page first scores

    if labelled_rows.empty:
        return metrics.per_class_scores([], [], [])
    truth, predicted = labelled_rows["label"].astype(str), labelled_rows["prediction"].astype(str)
    return metrics.per_class_scores(truth, predicted, class_names(labelled_rows))


def regression_rows(labelled_rows: pd.DataFrame) -> pd.DataFrame:
    """Labelled predictions of a regression model as numbers, with ``error`` (prediction minus
    label). Labels are stored as text: a row whose label or prediction is no number is left
    out (counted by the caller as the difference in length)."""
    frame = labelled_rows.assign(
        prediction=pd.to_numeric(labelled_rows["prediction"], errors="coerce"),
        label=pd.to_numeric(labelled_rows["label"], errors="coerce"),
    ).dropna(subset=["prediction", "label"])
    return frame.assign(error=frame["prediction"] - frame["label"]).reset_index(drop=True)


def regression_scores(rows: pd.DataFrame) -> dict[str, float | None]:
    """RMSE, MAE, error bias (mean of prediction - label) and R² of numeric labelled rows, as
    ``metrics.regression_scores`` scores them: R² is None (undefined) with fewer than two rows
    or constant labels, every figure None without rows."""
    from mlops_stack import metrics  # scikit-learn, when a page first scores

    return metrics.regression_scores(
        rows["label"].to_numpy(float), rows["prediction"].to_numpy(float)
    )


def bucket_size(span: timedelta) -> str:
    """A time bucket that cuts ``span`` into a readable number of points (pandas frequency)."""
    if span <= timedelta(hours=3):
        return "5min"
    if span <= timedelta(days=2):
        return "1h"
    return "1D"


def error_buckets(rows: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """RMSE, MAE and error bias of the numeric labelled rows per time bucket of creation.

    Columns: ``bucket`` (its start, UTC), ``rows``, ``rmse``, ``mae``, ``error_bias``; only
    buckets that hold rows.
    """
    columns = ["bucket", "rows", RMSE, MAE, ERROR_BIAS]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    created = pd.to_datetime(rows["created_at"], utc=True)
    freq = freq or bucket_size(created.max() - created.min())
    grouped = rows.assign(
        bucket=created.dt.floor(freq), squared=rows["error"] ** 2, absolute=rows["error"].abs()
    ).groupby("bucket")
    frame = grouped.agg(
        rows=("error", "size"),
        squared=("squared", "mean"),
        absolute=("absolute", "mean"),
        bias=("error", "mean"),
    ).reset_index()
    frame[RMSE], frame[MAE], frame[ERROR_BIAS] = (
        np.sqrt(frame["squared"]),
        frame["absolute"],
        frame["bias"],
    )
    return frame[columns]


def unseen_categories(quality: list[dict[str, Any]], window_rows: int | None) -> pd.DataFrame:
    """The features of one run's data quality with values training never saw: how many rows,
    their share of the window, and the most frequent examples. Most affected first."""
    columns = ["feature", "unseen rows", "share of window", "examples"]
    found = [q for q in quality if int(q.get("unseen_categories") or 0) > 0]
    frame = pd.DataFrame(
        [
            {
                "feature": q.get("feature", ""),
                "unseen rows": int(q["unseen_categories"]),
                "share of window": (
                    int(q["unseen_categories"]) / window_rows if window_rows else float("nan")
                ),
                "examples": ", ".join(map(str, q.get("unseen_examples") or [])),
            }
            for q in found
        ],
        columns=columns,
    )
    return frame.sort_values(["unseen rows", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )
