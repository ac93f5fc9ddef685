"""From check results to one status, with the reason in words.

One threshold table (settings): ``MLOPS_DRIFT_WARNING_SHARE`` (share of drifted features that
warns), ``MLOPS_DRIFT_SHARE`` (share that counts as drift) and ``MLOPS_QUALITY_DROP`` (how far
accuracy, F1 or ROC AUC on labelled rows may fall below the champion's holdout figure before
the model counts as degraded), judged only from ``MLOPS_MONITOR_MIN_LABELLED`` labelled rows on
(two labels say nothing about F1). The worst condition wins: degraded > drift > warning > ok.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_stack.monitoring.checks import CheckResult
from mlops_stack.names import QUALITY_METRICS, MonitorStatus


@dataclass(frozen=True)
class Thresholds:
    warning_share: float
    drift_share: float
    quality_drop: float
    min_labelled: int = 1  # fewer labelled rows: quality is reported, not judged


@dataclass(frozen=True)
class Status:
    status: MonitorStatus
    reason: str
    # alerting condition (a status of names.ALERTING_STATUSES) -> reason, for the alert table
    conditions: dict[str, str]

    def __post_init__(self) -> None:
        # a plain "skipped" becomes MonitorStatus.SKIPPED; an unknown word fails here
        object.__setattr__(self, "status", MonitorStatus(self.status))


def quality_vs_holdout(
    result: CheckResult, baseline: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """Quality on labelled rows next to the holdout figure: metric -> (now, at training)."""
    quality = result.model_quality
    if quality is None:
        return {}
    drops: dict[str, tuple[float, float]] = {}
    for name in QUALITY_METRICS:
        now, then = getattr(quality, name), baseline.get(name)
        if now is not None and then is not None:
            drops[name] = (float(now), float(then))
    return drops


def classify(result: CheckResult, baseline: dict[str, float], limits: Thresholds) -> Status:
    """The run's status and why, naming the features and metrics behind it."""
    conditions: dict[str, str] = {}
    reasons: list[str] = []
    labelled = result.model_quality.labelled_rows if result.model_quality else 0
    judged = labelled >= limits.min_labelled
    degraded = {
        name: (now, then)
        for name, (now, then) in quality_vs_holdout(result, baseline).items()
        if judged and then - now > limits.quality_drop
    }
    unjudged = (
        f"quality not judged: {labelled} labelled rows, {limits.min_labelled} needed "
        "(MLOPS_MONITOR_MIN_LABELLED)"
        if labelled and not judged
        else None
    )
    if degraded:
        text = ", ".join(
            f"{n} {now:.3f} vs {then:.3f} on the holdout" for n, (now, then) in degraded.items()
        )
        conditions[MonitorStatus.DEGRADED] = (
            f"quality dropped more than {limits.quality_drop:.2f}: {text} "
            f"({labelled} labelled rows)"
        )
        reasons.append(conditions[MonitorStatus.DEGRADED])
    drifted = result.drifted_features()
    share_text = (
        f"{len(drifted)} of {len(result.features)} features drifted "
        f"({result.drift_share:.0%})" + (f": {', '.join(drifted[:8])}" if drifted else "")
    )
    if result.drift_share >= limits.drift_share and drifted:
        conditions[MonitorStatus.DRIFT] = f"{share_text}; drift from {limits.drift_share:.0%}"
        reasons.append(conditions[MonitorStatus.DRIFT])
    elif result.drift_share >= limits.warning_share and drifted:
        reasons.append(f"{share_text}; warning from {limits.warning_share:.0%}")
    prediction = result.prediction_drift
    if prediction is not None and prediction.drifted:
        reasons.append(f"predicted classes drifted ({prediction.method} {prediction.score:.3g})")
    if degraded:
        status = MonitorStatus.DEGRADED
    elif MonitorStatus.DRIFT in conditions:
        status = MonitorStatus.DRIFT
    elif reasons:
        status = MonitorStatus.WARNING
    else:
        status = MonitorStatus.OK
        quality = unjudged or ("no quality drop" if judged else "no labels in the window")
        reasons.append(f"{share_text}; {quality}")
    if unjudged and status != MonitorStatus.OK:
        reasons.append(unjudged)
    return Status(status, "; ".join(reasons), conditions)
