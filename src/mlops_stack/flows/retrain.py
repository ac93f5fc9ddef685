"""The retrain flow: original data plus the labelled rows -> train flow -> gate on fresh rows.

Started by the monitor flow on drift or degradation (``MLOPS_RETRAIN_ENABLED``) or by hand. The
rows that came back labelled through ``/feedback`` are split in two: one half joins the
original training table, the other half is kept out of training and is where the gate compares
the candidate with the champion. That is the data the champion is in question on; comparing on
the old holdout could keep a champion that is good only at yesterday's data. A cool-down
(``MLOPS_RETRAIN_COOLDOWN_MINUTES``) stops a persisting alert from retraining on every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import mlflow
import pandas as pd
from prefect import flow, get_run_logger
from sklearn.model_selection import train_test_split

from mlops_stack import registry
from mlops_stack.data import load_dataset
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.monitoring_db.database import feature_column
from mlops_stack.monitoring.alerts import announce
from mlops_stack.settings import Settings, get_settings

TRIGGER = "retrain"


@dataclass
class RetrainSummary:
    status: str  # promoted | kept | skipped
    reason: str
    version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    labelled_rows: int = 0
    evaluation_rows: int = 0
    trigger_reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def last_retrain(settings: Settings) -> datetime | None:
    """When the last retrain started, from the train runs it tagged in MLflow."""
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return None
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlops.trigger` = '{TRIGGER}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return datetime.fromtimestamp(runs[0].info.start_time / 1000, UTC) if runs else None


def _as_training_table(rows: pd.DataFrame, original: pd.DataFrame, target: str) -> pd.DataFrame:
    """Labelled predictions as rows of the original table: its feature columns, and its target
    in its own type (labels come back from /feedback as text)."""
    features = [c for c in original.columns if c != target]
    table = rows[[feature_column(c) for c in features]].set_axis(features, axis=1)
    labels = rows["label"].astype(str)
    if pd.api.types.is_bool_dtype(original[target]):
        labels = labels.map({"True": True, "False": False})
    elif pd.api.types.is_numeric_dtype(original[target]):
        labels = pd.to_numeric(labels).astype(original[target].dtype)
    table[target] = labels.to_numpy()
    return table


@flow(name="retrain")
def retrain_flow(trigger_reason: str = "requested by hand") -> dict[str, object]:
    """Retrain on the original data plus the labelled rows; the gate decides on fresh rows."""
    settings = get_settings()
    logger = get_run_logger()
    registry.configure_tracking(settings)
    now = datetime.now(UTC)
    last = last_retrain(settings)
    cooldown = timedelta(minutes=settings.retrain_cooldown_minutes)
    if last is not None and now - last < cooldown:
        why = (
            f"cool-down: last retrain at {last.isoformat(timespec='seconds')}, the next not "
            f"before {(last + cooldown).isoformat(timespec='seconds')}"
        )
        logger.info("retrain skipped: %s", why)
        return RetrainSummary("skipped", why, trigger_reason=trigger_reason).to_dict()

    store = MonitoringDB(settings.resolved_monitoring_db_url)
    rows = store.predictions_with_feedback(model_name=settings.model_name, labelled_only=True)
    store.dispose()
    if len(rows) < settings.retrain_min_labelled:
        why = (
            f"not enough labelled rows: {len(rows)}, {settings.retrain_min_labelled} needed "
            "(MLOPS_RETRAIN_MIN_LABELLED)"
        )
        logger.info("retrain skipped: %s", why)
        return RetrainSummary(
            "skipped", why, labelled_rows=len(rows), trigger_reason=trigger_reason
        ).to_dict()

    original = load_dataset(settings.dataset_path, settings.target_column)
    fresh = _as_training_table(rows, original.frame, original.target)
    counts = fresh[original.target].value_counts()
    stratify = fresh[original.target] if counts.min() >= 2 else None
    fresh_train, fresh_eval = train_test_split(
        fresh, test_size=0.5, random_state=settings.random_seed, stratify=stratify
    )
    folder = settings.data_dir / "retrain" / now.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = folder / "train.parquet", folder / "evaluation.parquet"
    pd.concat([original.frame, fresh_train], ignore_index=True).to_parquet(train_path)
    fresh_eval.to_parquet(eval_path)

    result = train_flow(
        data_path=str(train_path),
        target=original.target,
        evaluation_path=str(eval_path),
        trigger=TRIGGER,
    )
    status = "promoted" if result["promoted"] else "kept"
    summary = RetrainSummary(
        status=status,
        reason=result["reason"],
        version=result["version"],
        champion_before=result["champion_before"],
        champion_after=result["champion_after"],
        labelled_rows=len(rows),
        evaluation_rows=len(fresh_eval),
        trigger_reason=trigger_reason,
    )
    announce(
        settings,
        f"retrain: v{result['version']} {status} "
        f"(champion v{result['champion_after']}): {result['reason']}",
        summary.to_dict(),
    )
    logger.info("retrain %s: %s", status, result["reason"])
    return summary.to_dict()
