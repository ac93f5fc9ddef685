"""The promotion gate: should a newly trained version replace the champion?

Pure logic, no MLflow: the registry module feeds it metrics and applies the decision. Every
comparison knows the metric's direction (``names.higher_is_better``): a higher ROC AUC is
better, a lower RMSE is better. The rule:

1. The candidate must stay within every absolute bound: a minimum for a higher-better metric
   (``MLOPS_GATE_MIN_ROC_AUC``, ``MLOPS_GATE_MIN_R2``), a maximum for a lower-better one
   (``MLOPS_GATE_MAX_RMSE``). Bounds on metrics the candidate's task does not report are ignored.
2. With no champion, a candidate within the bounds is promoted.
3. Otherwise both are scored on the same evaluation data, and the candidate is promoted only if
   its gate metric beats the champion's by more than ``MLOPS_GATE_MIN_IMPROVEMENT`` (default 0),
   in the metric's direction. A tie keeps the champion: "not worse" is not "better", and
   swapping a model in production for an equal one costs a reload and a new version to explain
   for nothing.
4. A champion that cannot score the evaluation data (it was trained on other columns, or for
   another task) cannot be compared; the candidate stays challenger and a person decides with
   ``mlops promote``.
5. A figure undefined on the evaluation data (None, :mod:`mlops_stack.metrics`: ROC AUC of
   rows of one class, R2 of a constant target) promotes nothing: the candidate's gate metric,
   a metric it is bounded on, or the champion's gate metric. The reason names the figure and
   why it is undefined; a person may still promote by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from mlops_stack.metrics import why_undefined
from mlops_stack.names import (
    RMSE,
    ROC_AUC,
    Task,
    higher_is_better,
    holdout_metrics,
)

TIE_TOLERANCE = 1e-12
AUTO_METRIC = "auto"
DEFAULT_METRIC = {Task.CLASSIFICATION: ROC_AUC, Task.REGRESSION: RMSE}
"""The metric ``MLOPS_GATE_METRIC=auto`` compares, per task."""


class GateConfigError(ValueError):
    """The gate's configuration does not fit the model's task (e.g. roc_auc for regression)."""


def resolve_metric(metric: str, task: Task | str) -> str:
    """The metric the gate compares for a model of ``task``: ``auto`` picks the task's default
    (ROC AUC, RMSE); an explicit metric must be one the task reports."""
    task = Task(task)
    if metric == AUTO_METRIC:
        return DEFAULT_METRIC[task]
    allowed = holdout_metrics(task)
    if metric not in allowed:
        raise GateConfigError(
            f"MLOPS_GATE_METRIC={metric} does not apply to a {task} model; "
            f"use auto or one of {', '.join(allowed)}"
        )
    return metric


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why, in words a person reads in ``mlops models``.

    ``candidate_score`` and ``champion_score`` are None when undefined (or, for the champion,
    not measured): never NaN.
    """

    promote: bool
    reason: str
    metric: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    failed_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)


def outside_bounds(
    candidate: Mapping[str, float | None], bounds: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """Metric -> (value, bound) for every bound the candidate breaks: below a minimum of a
    higher-better metric, above a maximum of a lower-better one. An undefined figure breaks
    none (:func:`unchecked_bounds` names it)."""
    return {
        name: (value, bound)
        for name, bound in bounds.items()
        if (value := candidate.get(name)) is not None
        and (value < bound if higher_is_better(name) else value > bound)
    }


def unchecked_bounds(candidate: Mapping[str, float | None], bounds: dict[str, float]) -> list[str]:
    """The bounded metrics the candidate reports but that are undefined on this data."""
    return [name for name in bounds if name in candidate and candidate[name] is None]


def _undefined_text(names: list[str]) -> str:
    return "; ".join(f"{name} is undefined on this data ({why_undefined(name)})" for name in names)


def _describe_failure(name: str, value: float, bound: float) -> str:
    return f"{name} {value:.4f} {'<' if higher_is_better(name) else '>'} {bound:.4f}"


def decide(
    candidate: Mapping[str, float | None],
    champion: Mapping[str, float | None] | None,
    *,
    metric: str,
    bounds: dict[str, float],
    min_improvement: float = 0.0,
    champion_version: str | None = None,
    champion_error: str | None = None,
) -> GateDecision:
    """Apply the gate rule to a candidate's and the champion's metrics on the same data.

    ``champion`` is None when there is no champion, or when it could not be scored, in which case
    ``champion_error`` says why. A figure of None is undefined on the data (rule 5).
    """
    score = candidate[metric]
    undecided = GateDecision(False, "", metric, score, champion_version)
    failed = outside_bounds(candidate, bounds)
    if failed:
        broken = ", ".join(_describe_failure(n, v, b) for n, (v, b) in failed.items())
        return replace(
            undecided, reason=f"outside the absolute bounds: {broken}", failed_bounds=failed
        )
    unchecked = unchecked_bounds(candidate, bounds)
    undefined = ([metric] if score is None else []) + [n for n in unchecked if n != metric]
    if undefined:
        return replace(
            undecided,
            reason=f"not promoted: the candidate's {_undefined_text(undefined)}; "
            "promote by hand if intended",
        )
    if champion_version is None:
        return replace(
            undecided,
            promote=True,
            reason="first model: within every bound and there is no champion",
        )
    if champion is None or metric not in champion:
        why = champion_error or f"it reports no {metric}"
        return replace(
            undecided,
            reason=f"champion v{champion_version} cannot be scored on this data ({why}); "
            "promote by hand if intended",
        )
    best = champion[metric]
    if best is None:
        return replace(
            undecided,
            reason=f"champion v{champion_version} cannot be compared: its "
            f"{_undefined_text([metric])}; promote by hand if intended",
        )
    return _compare(replace(undecided, champion_score=best), min_improvement)


def _compare(decision: GateDecision, min_improvement: float) -> GateDecision:
    """Better, not enough better, tie or worse, in the direction of the decision's metric."""
    metric, score, best = decision.metric, decision.candidate_score, decision.champion_score
    assert score is not None and best is not None
    higher = higher_is_better(metric)
    versus = (
        f"{metric} {score:.4f} vs champion v{decision.champion_version} {best:.4f}, "
        f"{'higher' if higher else 'lower'} is better"
    )
    gain = score - best if higher else best - score  # > 0: the candidate is better
    if math.isclose(score, best, rel_tol=0, abs_tol=TIE_TOLERANCE):
        return replace(decision, reason=f"tie ({versus}): a tie keeps the champion")
    if gain > min_improvement:
        return replace(decision, promote=True, reason=f"better ({versus})")
    if gain > 0:
        return replace(
            decision, reason=f"not enough better ({versus}; needs > {min_improvement:.4f})"
        )
    return replace(decision, reason=f"worse ({versus})")


LIVE_ROWS_SETTING = "MLOPS_LIVE_PROMOTION_MIN_LABELLED"


def live_decision(
    champion: dict[str, float | None],
    challenger: dict[str, float | None],
    labelled_rows: int,
    *,
    metric: str,
    min_improvement: float,
    min_labelled: int,
    champion_version: str | None = None,
) -> GateDecision:
    """Should the shadow challenger replace the champion, judged on the same live labelled rows?

    Both metric sets come from the same rows (every labelled row of the monitor's window that
    both versions answered), so the comparison is the gate's own rule 3, in the metric's
    direction: promoted only when better by more than ``min_improvement``, a tie keeps the
    champion. Why the minimum of rows: on a few dozen rows a difference of a few points is
    noise, and a promotion on noise would churn the served model back and forth. With fewer
    than ``min_labelled`` rows, or a metric undefined on these rows (ROC AUC of one class),
    nothing is decided and the reason says so. Absolute bounds are the holdout gate's: here
    only the two versions are compared, on data neither trained on.
    """
    live = f"on {labelled_rows} live labelled rows"
    score, best = _figure(challenger.get(metric)), _figure(champion.get(metric))
    undecided = GateDecision(False, "", metric, score, champion_version, best)
    if labelled_rows < min_labelled:
        return replace(
            undecided,
            reason=f"no decision {live}: {min_labelled} needed ({LIVE_ROWS_SETTING})",
        )
    if score is None or best is None:
        return replace(undecided, reason=f"no decision {live}: {metric} is undefined on these rows")
    compared = _compare(undecided, min_improvement)
    return replace(compared, reason=f"{compared.reason} {live}")


def _figure(value: float | None) -> float | None:
    """A figure as the gate keeps it: a float, or None when undefined (a NaN read from an older
    store is undefined too, never a number compared with)."""
    return None if value is None or math.isnan(value) else float(value)
