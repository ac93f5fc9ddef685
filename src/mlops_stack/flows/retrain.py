"""The retrain flow: original data plus the labelled rows -> train flow -> gate on fresh rows.

Started by the monitor flow on drift or degradation (``MLOPS_RETRAIN_ENABLED``) or by hand. The
rows that came back labelled through ``/feedback`` are split in two: one half joins the
original training table, the other half is kept out of training and is where the gate compares
the candidate with the champion. That is the data the champion is in question on; comparing on
the old holdout could keep a champion that is good only at yesterday's data.

The fresh half counts at least as much as the old table (:func:`training_table`): the original
rows are sampled down to as many as there are fresh training rows (never below
``MLOPS_RETRAIN_MIN_LABELLED``). After a concept change the old table's labels contradict the
new ones wherever the concept moved; with all 569 old rows against a few hundred fresh ones the
candidate learns mostly yesterday's rule, and the gate rightly refuses it on today's rows
(measured in docs/monitoring.md, "Retraining after a concept change"). A cool-down
(``MLOPS_RETRAIN_COOLDOWN_MINUTES``) stops a persisting alert from retraining on every run.

The new model does the champion's task (its schema says which): a regressor's labels come back
from ``/feedback`` as text and become a numeric target; a classifier's split is stratified.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
from sklearn.model_selection import train_test_split

from mlops_stack import modelstore
from mlops_stack.data import Dataset, infer_task, load_dataset
from mlops_stack.flows.orchestration import flow, run_logger
from mlops_stack.flows.parameters import RetrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db import features as window_features
from mlops_stack.names import RetrainStatus, Task
from mlops_stack.stack import Stack, current_stack

TRIGGER = "retrain"


@dataclass(frozen=True)
class RetrainSummary:
    """How a retrain ended and on which rows, for the CLI, the monitor flow and the demo."""

    status: RetrainStatus
    reason: str
    version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    labelled_rows: int = 0
    evaluation_rows: int = 0
    trigger_reason: str = ""


def last_retrain(experiment_name: str) -> datetime | None:
    """When the last retrain started, from the train runs it tagged in MLflow."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
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


def _as_training_table(
    rows: pd.DataFrame, original: pd.DataFrame, target: str, task: Task
) -> pd.DataFrame:
    """Labelled predictions as rows of the original table: its feature columns, and its target
    in its own type (labels come back from /feedback as text). A regressor's target is a number
    (a float: a label may have a fraction where the table had whole numbers); a label that is no
    number cannot train it, and its row is left out."""
    features = [c for c in original.columns if c != target]
    table = window_features(rows, features)
    if task is Task.REGRESSION:
        table[target] = pd.to_numeric(rows["label"], errors="coerce").to_numpy(dtype=float)
        return table.loc[table[target].notna()]
    labels = rows["label"].astype(str)
    if pd.api.types.is_bool_dtype(original[target]):
        labels = labels.map({"True": True, "False": False})
    elif pd.api.types.is_numeric_dtype(original[target]):
        labels = pd.to_numeric(labels).astype(original[target].dtype)
    table[target] = labels.to_numpy()
    return table


def training_table(
    original: pd.DataFrame, fresh: pd.DataFrame, *, target: str, task: Task, floor: int, seed: int
) -> pd.DataFrame:
    """The original table sampled down to ``max(len(fresh), floor)`` rows, then ``fresh``.

    Recent labels weigh at least as much as the old table's, so a changed relationship between
    features and label is learnt rather than outvoted; ``floor`` keeps enough old rows to train
    on when few fresh ones came. A classifier's sample keeps every class's share.
    """
    keep = max(len(fresh), floor)
    if keep >= len(original):
        old = original
    elif task is Task.CLASSIFICATION:
        old = original.groupby(target, group_keys=False).sample(
            frac=keep / len(original), random_state=seed
        )
    else:
        old = original.sample(n=keep, random_state=seed)
    return pd.concat([old, fresh], ignore_index=True)


def _task(stack: Stack, params: RetrainParameters, original: Dataset) -> Task:
    """The task the retrained model does: the champion's (its schema says), else the one
    ``MLOPS_TASK`` sets or the original table's target implies, as training would pick."""
    champion = stack.registry.champion()
    if champion is not None and champion.run_id:
        return modelstore.load_schema(str(champion.run_id)).task
    return infer_task(original.frame[original.target], params.train.task)


def _new_folder(parent: Path, now: datetime) -> Path:
    """A folder of this run's own for its tables, named by its time: kept, since the trained
    version's run records their paths. Unique even when two workers sharing the data volume
    (`--scale worker=2`) retrain in the same second: ``mkdtemp`` creates it exclusively."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{now:%Y%m%dT%H%M%S}-", dir=parent))


def _cooling_down(stack: Stack, params: RetrainParameters, now: datetime) -> str | None:
    """Why a retrain may not start yet (the cool-down since the last one), or None."""
    last = last_retrain(stack.settings.experiment_name)
    cooldown = timedelta(minutes=params.cooldown_minutes)
    if last is None or now - last >= cooldown:
        return None
    return (
        f"cool-down: last retrain at {last.isoformat(timespec='seconds')}, the next not "
        f"before {(last + cooldown).isoformat(timespec='seconds')}"
    )


@flow(name="retrain")
def retrain_flow(params: RetrainParameters | None = None) -> RetrainSummary:
    """Retrain on the labelled rows plus the original data (sampled down to as many rows as
    the labelled half, so that recent labels weigh as much); the gate decides on fresh rows.

    ``params`` None takes every option from the settings (``MLOPS_*``).
    """
    stack = current_stack()
    params = params or RetrainParameters.from_settings(stack.settings)
    logger = run_logger()
    stack.registry.use_experiment(stack.settings.experiment_name)
    now = datetime.now(UTC)
    why = _cooling_down(stack, params, now)
    if why is not None:
        logger.info("retrain skipped: %s", why)
        return RetrainSummary(RetrainStatus.SKIPPED, why, trigger_reason=params.trigger_reason)

    rows = stack.monitor_store.predictions_with_feedback(
        model_name=stack.settings.model_name, labelled_only=True
    )
    if len(rows) < params.min_labelled:
        why = (
            f"not enough labelled rows: {len(rows)}, {params.min_labelled} needed "
            "(MLOPS_RETRAIN_MIN_LABELLED)"
        )
        logger.info("retrain skipped: %s", why)
        return RetrainSummary(
            RetrainStatus.SKIPPED,
            why,
            labelled_rows=len(rows),
            trigger_reason=params.trigger_reason,
        )

    original = load_dataset(params.train.data_path, params.train.target)
    task = _task(stack, params, original)
    fresh = _as_training_table(rows, original.frame, original.target, task)
    stratify = None
    if task is Task.CLASSIFICATION and fresh[original.target].value_counts().min() >= 2:
        stratify = fresh[original.target]
    fresh_train, fresh_eval = train_test_split(
        fresh, test_size=0.5, random_state=params.train.random_seed, stratify=stratify
    )
    folder = _new_folder(stack.settings.data_dir / "retrain", now)
    train_path, eval_path = folder / "train.parquet", folder / "evaluation.parquet"
    training_table(
        original.frame,
        fresh_train,
        target=original.target,
        task=task,
        floor=params.min_labelled,
        seed=params.train.random_seed,
    ).to_parquet(train_path)
    fresh_eval.to_parquet(eval_path)

    result = train_flow(
        params.train.model_copy(
            update={
                "data_path": str(train_path),
                "target": original.target,
                "task": str(task),
                "evaluation_path": str(eval_path),
                "trigger": TRIGGER,
            }
        )
    )
    status = RetrainStatus.PROMOTED if result.promoted else RetrainStatus.KEPT
    summary = RetrainSummary(
        status=status,
        reason=result.reason,
        version=result.version,
        champion_before=result.champion_before,
        champion_after=result.champion_after,
        labelled_rows=len(rows),
        evaluation_rows=len(fresh_eval),
        trigger_reason=params.trigger_reason,
    )
    stack.notifier.announce(
        f"retrain: v{result.version} {status} (champion v{result.champion_after}): {result.reason}",
        asdict(summary),
    )
    logger.info("retrain %s: %s", status, result.reason)
    return summary
