"""The promotion gate: should a newly trained version replace the champion?

Pure logic, no MLflow: the registry module feeds it metrics and applies the decision. The rule:

1. The candidate must clear every absolute floor (``MLOPS_GATE_MIN_*``).
2. With no champion, a candidate that clears the floors is promoted.
3. Otherwise both are scored on the same evaluation data, and the candidate is promoted only if
   its gate metric beats the champion's by more than ``MLOPS_GATE_MIN_IMPROVEMENT`` (default 0).
   A tie keeps the champion: "not worse" is not "better", and swapping a model in production
   for an equal one costs a reload and a new version to explain for nothing.
4. A champion that cannot score the evaluation data (it was trained on other columns) cannot be
   compared; the candidate stays challenger and a person decides with ``mlops promote``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why, in words a person reads in ``mlops models``."""

    promote: bool
    reason: str
    metric: str
    candidate_score: float
    champion_version: str | None = None
    champion_score: float | None = None
    failed_floors: dict[str, tuple[float, float]] = field(default_factory=dict)


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str,
    floors: dict[str, float],
    min_improvement: float = 0.0,
    champion_version: str | None = None,
    champion_error: str | None = None,
) -> GateDecision:
    """Apply the gate rule to a candidate's and the champion's metrics on the same data.

    ``champion`` is None when there is no champion, or when it could not be scored, in which case
    ``champion_error`` says why.
    """
    score = candidate[metric]
    undecided = GateDecision(False, "", metric, score, champion_version)
    failed = {
        name: (candidate[name], floor)
        for name, floor in floors.items()
        if name in candidate and candidate[name] < floor
    }
    if failed:
        below = ", ".join(f"{n} {v:.4f} < {f:.4f}" for n, (v, f) in failed.items())
        return replace(undecided, reason=f"below the absolute floor: {below}", failed_floors=failed)
    if champion_version is None:
        return replace(
            undecided,
            promote=True,
            reason="first model: clears every floor and there is no champion",
        )
    if champion is None:
        why = champion_error or "no metrics"
        return replace(
            undecided,
            reason=f"champion v{champion_version} cannot be scored on this data ({why}); "
            "promote by hand if intended",
        )
    best = champion[metric]
    compared = replace(undecided, champion_score=best)
    versus = f"{metric} {score:.4f} vs champion v{champion_version} {best:.4f}"
    if math.isclose(score, best, rel_tol=0, abs_tol=TIE_TOLERANCE):
        return replace(compared, reason=f"tie ({versus}): a tie keeps the champion")
    if score > best + min_improvement:
        return replace(compared, promote=True, reason=f"better ({versus})")
    if score > best:
        return replace(
            compared, reason=f"not enough better ({versus}; needs > {min_improvement:.4f})"
        )
    return replace(compared, reason=f"worse ({versus})")
