"""The words the stack's parts agree on: metric names, statuses, aliases, deployments.

One place, so that a status written by the monitor flow, stored in the monitoring database,
coloured by the dashboard and printed by the CLI is the same value everywhere, and a typo is a
type error rather than a silently unmatched string. The enums are ``StrEnum``: they compare
equal to, serialise as and are stored as their plain text values.
"""

from __future__ import annotations

from enum import StrEnum

# --- metrics ---------------------------------------------------------------------------------
ACCURACY = "accuracy"
F1 = "f1"
ROC_AUC = "roc_auc"
PRECISION = "precision"
RECALL = "recall"

QUALITY_METRICS: tuple[str, ...] = (ACCURACY, F1, ROC_AUC)
"""What monitoring judges on labelled rows and the registry shows per version."""

HOLDOUT_METRICS: tuple[str, ...] = (ACCURACY, F1, ROC_AUC, PRECISION, RECALL)
"""What training scores every candidate on; the gate may compare any of them."""

LATENCY_P95 = "latency_p95_ms"

RMSE = "rmse"
MAE = "mae"
R2 = "r2"
ERROR_BIAS = "error_bias"  # mean of (prediction - label): above 0, the model over-predicts

REGRESSION_QUALITY_METRICS: tuple[str, ...] = (RMSE, MAE, R2)
"""What monitoring judges on labelled rows of a regression model (plus ``ERROR_BIAS`` shown)."""

REGRESSION_HOLDOUT_METRICS: tuple[str, ...] = (RMSE, MAE, R2)
"""What training scores every regression candidate on; the gate may compare any of them."""

LOWER_IS_BETTER: frozenset[str] = frozenset({RMSE, MAE, LATENCY_P95})
"""Metrics where a smaller number is the better model; every other metric is higher-better."""


class Task(StrEnum):
    """What a model predicts: a class (with probabilities) or a number.

    A property of the dataset (inferred from its target, or set with ``MLOPS_TASK``), stored
    with the model's schema and on its registered version.
    """

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


def quality_metrics(task: Task | str) -> tuple[str, ...]:
    """The metrics monitoring judges and the registry shows for a model of ``task``."""
    return REGRESSION_QUALITY_METRICS if Task(task) is Task.REGRESSION else QUALITY_METRICS


def holdout_metrics(task: Task | str) -> tuple[str, ...]:
    """The metrics training reports for every candidate of ``task``."""
    return REGRESSION_HOLDOUT_METRICS if Task(task) is Task.REGRESSION else HOLDOUT_METRICS


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better model (RMSE, MAE, latency: no)."""
    return metric.removeprefix("cv_") not in LOWER_IS_BETTER


# --- the registry ----------------------------------------------------------------------------
class Alias(StrEnum):
    """Registry aliases: the version served, and the newest one the gate did not promote."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"


class GateOutcome(StrEnum):
    """What a version's ``gate.decision`` tag says happened to it."""

    PROMOTED = "promoted"
    KEPT = "kept-as-challenger"
    PROMOTED_BY_HAND = "promoted-by-hand"


# --- monitoring ------------------------------------------------------------------------------
class MonitorStatus(StrEnum):
    """One monitor run's verdict; the worst condition wins: degraded > drift > warning > ok."""

    OK = "ok"
    WARNING = "warning"
    DRIFT = "drift"
    DEGRADED = "degraded"
    SKIPPED = "skipped"


ALERTING_STATUSES: tuple[MonitorStatus, ...] = (MonitorStatus.DRIFT, MonitorStatus.DEGRADED)
"""Statuses that open an alert (and may start a retrain); a warning only shows."""


class AlertState(StrEnum):
    """An alert row's state: open while its condition persists."""

    OPEN = "open"
    RESOLVED = "resolved"


class AlertChangeKind(StrEnum):
    """What one monitor run did to an alert."""

    OPENED = "opened"
    RESOLVED = "resolved"
    ONGOING = "ongoing"


class RetrainStatus(StrEnum):
    """How a retrain ended: a new champion, a new challenger, or not started (and why)."""

    PROMOTED = "promoted"
    KEPT = "kept"
    SKIPPED = "skipped"


# --- Prefect deployments served by `mlops worker` --------------------------------------------
TRAIN_DEPLOYMENT = "train/train"
MONITOR_DEPLOYMENT = "monitor/monitor"
RETRAIN_DEPLOYMENT = "retrain/retrain"
RETENTION_DEPLOYMENT = "retention/retention"
DEPLOYMENTS = (TRAIN_DEPLOYMENT, MONITOR_DEPLOYMENT, RETRAIN_DEPLOYMENT, RETENTION_DEPLOYMENT)
"""Every deployment the worker serves (what it announces, and whose orphaned runs it ends)."""
