"""From check results to one status, with the reason in words.

One threshold table (settings). Drift: each column's test is already corrected for testing
every column at once (``MLOPS_DRIFT_ALPHA`` over the m columns, Bonferroni) and needs an effect
of at least ``MLOPS_DRIFT_MIN_EFFECT`` (:class:`~mlops_stack.monitoring.drift.DriftRule`), so a
drifted column is news: ``MLOPS_DRIFT_WARNING_SHARE`` (default 0: any drifted feature warns),
``MLOPS_DRIFT_SHARE`` (the share of drifted features that counts as drift, an alert); a drifted
prediction (one of the m corrected tests) warns. Every drift reason names the correction
("corrected for 31 tests at alpha 0.05"). Quality: how far quality on labelled rows
may move from the champion's holdout figure before the model counts as degraded:
``MLOPS_QUALITY_DROP`` for the metrics where higher is better (accuracy, F1, ROC AUC), an
absolute drop, and ``MLOPS_QUALITY_ERROR_RISE`` for the errors where lower is better (a
regressor's RMSE and MAE), a rise relative to the holdout figure since an error has the
target's unit. A regressor's R2 is shown, not judged: it divides by the variance of the
window's labels, so a window of similar targets has a low R2 with the very same errors.
Quality is judged only from ``MLOPS_MONITOR_MIN_LABELLED`` labelled rows
on (two labels say nothing about F1). A figure undefined on the window's labelled rows (ROC AUC
of rows of one class: :mod:`mlops_stack.metrics`) is reported as undefined and never counts as
a drop; neither does a holdout figure training could not measure (absent from its run).
Values of a categorical feature training never saw make
at least a warning, named with their counts: the model answers them with confidence it has
not earned. The worst condition wins: degraded > drift > warning > ok.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_stack.metrics import why_undefined
from mlops_stack.monitoring.checks import CheckResult
from mlops_stack.monitoring.quality import FeatureQuality, ModelQuality
from mlops_stack.names import R2, MonitorStatus, Task, higher_is_better, quality_metrics

MAX_NAMED_FEATURES = 8  # features named in a reason; the rest are counted


@dataclass(frozen=True)
class Thresholds:
    warning_share: float  # 0: any drifted feature warns (the tests are corrected)
    drift_share: float
    quality_drop: float
    min_labelled: int = 1  # fewer labelled rows: quality is reported, not judged
    error_rise: float = 0.25  # relative rise of RMSE / MAE over the holdout that degrades


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
    """Quality on labelled rows next to the holdout figure: metric -> (now, at training).

    Only the metrics judged for the model's task (``names.quality_metrics``, less a
    regressor's R2: see the module's docstring); its error bias is shown, not judged (the
    holdout has no figure for it). A figure undefined now or then has no pair.
    """
    quality = result.model_quality
    if quality is None:
        return {}
    pairs: dict[str, tuple[float, float]] = {}
    for name in judged_metrics(quality):
        now, then = quality.get(name), baseline.get(name)
        if now is not None and then is not None:
            pairs[name] = (float(now), float(then))
    return pairs


def judged_metrics(quality: ModelQuality) -> list[str]:
    """The metrics whose drop can degrade a model of ``quality``'s task."""
    return [
        name
        for name in quality_metrics(quality.task)
        if not (quality.task == Task.REGRESSION and name == R2)
    ]


def undefined_text(quality: ModelQuality | None) -> str | None:
    """The judged metrics undefined on the window's labelled rows, and why, for the reason."""
    if quality is None:
        return None
    names = [n for n in judged_metrics(quality) if n in quality.metrics and quality.get(n) is None]
    if not names:
        return None
    why = "; ".join(why_undefined(name) for name in names)
    return (
        f"{', '.join(names)} undefined on the {quality.labelled_rows} labelled rows, "
        f"not judged ({why})"
    )


def degradation(name: str, now: float, then: float, limits: Thresholds) -> str | None:
    """Why ``name`` at ``now`` against ``then`` on the holdout counts as degraded, or None.

    Higher-better metrics degrade by an absolute drop of more than ``quality_drop``; errors
    (lower is better) by a rise of more than ``error_rise`` relative to the holdout figure.
    """
    if higher_is_better(name):
        if then - now <= limits.quality_drop:
            return None
        return (
            f"{name} {now:.3f} vs {then:.3f} on the holdout "
            f"(down {then - now:.3f}, more than {limits.quality_drop:.2f})"
        )
    if now <= then * (1 + limits.error_rise):
        return None
    rise = f"up {now / then - 1:.1%}" if then > 0 else "up from 0"
    return (
        f"{name} {now:.4g} vs {then:.4g} on the holdout "
        f"({rise}, more than {limits.error_rise:.0%}; lower is better)"
    )


def unseen_categories(quality: list[FeatureQuality]) -> str | None:
    """The categorical features with values training never saw, with counts and examples."""
    named = [
        f"{q.feature} {q.unseen_categories} rows ("
        + ", ".join(repr(str(v)) for v in q.unseen_examples)
        + ")"
        for q in quality
        if q.unseen_categories
    ]
    if not named:
        return None
    more = len(named) - MAX_NAMED_FEATURES
    text = ", ".join(named[:MAX_NAMED_FEATURES]) + (f" and {more} more" if more > 0 else "")
    return f"unseen categories: {text}"


def drift_text(result: CheckResult) -> str:
    """How many features drifted, which (the most drifted first) and under which rule."""
    drifted = result.drifted_features()
    text = f"{len(drifted)} of {len(result.features)} features drifted ({result.drift_share:.0%})"
    if drifted:
        more = len(drifted) - MAX_NAMED_FEATURES
        text += ": " + ", ".join(drifted[:MAX_NAMED_FEATURES])
        text += f" and {more} more" if more > 0 else ""
    if result.drift_rule is not None:
        text += f" ({result.drift_rule.describe()})"
    return text


def warning_text(limits: Thresholds) -> str:
    """Where the warning starts: any drifted feature (share 0), or a share of them."""
    if limits.warning_share <= 0:
        return "any drifted feature"
    return f"{limits.warning_share:.0%}"


def classify(result: CheckResult, baseline: dict[str, float], limits: Thresholds) -> Status:
    """The run's status and why, naming the features and metrics behind it."""
    conditions: dict[str, str] = {}
    reasons: list[str] = []
    labelled = result.model_quality.labelled_rows if result.model_quality else 0
    judged = labelled >= limits.min_labelled
    degraded = [
        why
        for name, (now, then) in quality_vs_holdout(result, baseline).items()
        if judged and (why := degradation(name, now, then, limits)) is not None
    ]
    unjudged = (
        f"quality not judged: {labelled} labelled rows, {limits.min_labelled} needed "
        "(MLOPS_MONITOR_MIN_LABELLED)"
        if labelled and not judged
        else None
    )
    if degraded:
        conditions[MonitorStatus.DEGRADED] = (
            f"quality degraded: {', '.join(degraded)} ({labelled} labelled rows)"
        )
        reasons.append(conditions[MonitorStatus.DEGRADED])
    drifted = result.drifted_features()
    share_text = drift_text(result)
    if result.drift_share >= limits.drift_share and drifted:
        conditions[MonitorStatus.DRIFT] = f"{share_text}; drift from {limits.drift_share:.0%}"
        reasons.append(conditions[MonitorStatus.DRIFT])
    elif result.drift_share >= limits.warning_share and drifted:
        reasons.append(f"{share_text}; warning from {warning_text(limits)}")
    prediction = result.prediction_drift
    if prediction is not None and prediction.drifted:
        what = "predicted values" if prediction.kind == "numeric" else "predicted classes"
        effect = f", effect {prediction.effect:.2f}" if prediction.effect is not None else ""
        named = any(share_text in reason for reason in reasons)  # the rule is said once
        rule = f"; {result.drift_rule.describe()}" if result.drift_rule and not named else ""
        reasons.append(f"{what} drifted ({prediction.method} {prediction.score:.3g}{effect}){rule}")
    unseen = unseen_categories(result.quality)
    if unseen:
        reasons.append(unseen)
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
    undefined = undefined_text(result.model_quality) if judged else None
    if undefined:  # said, never a condition: nothing measured cannot have dropped
        reasons.append(undefined)
    return Status(status, "; ".join(reasons), conditions)
