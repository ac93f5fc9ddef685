"""The monitor's second question: does the shadow challenger beat the champion on live data?

The predictor scores every answered row with the ``challenger`` version too, in shadow, and logs
it in ``shadow_predictions`` under the champion's ``(request_id, row)``. Once labels arrive,
each monitor run scores both versions with :func:`~mlops_stack.monitoring.quality.model_quality`
(the function the window's own quality uses) on exactly the same rows: every labelled row of the
monitor's window that the challenger also answered. The comparison is stored with the run
(``monitor_runs.challenger``) and logged to its MLflow run; then the live gate
(:func:`mlops_stack.gate.live_decision`) decides, and when ``MLOPS_LIVE_PROMOTION_ENABLED`` it
promotes a challenger that wins: the decision is recorded on the version as the train flow's
gate records its own, the alias moves (the predictors are told), and the notifier announces it.

Kept out of ``monitor.py`` so that the drift and estimation parts of the flow and this part
change independently; it takes plain values (the champion's version and schema, the window's
bounds), not the monitor's own types.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlflow.entities import Metric, RunTag
from prefect.cache_policies import NO_CACHE

from mlops_stack.data import DatasetSchema
from mlops_stack.flows.orchestration import run_logger, task
from mlops_stack.flows.parameters import LivePromotionOptions
from mlops_stack.gate import GateConfigError, GateDecision, live_decision, resolve_metric
from mlops_stack.monitoring.quality import ModelQuality, model_quality
from mlops_stack.monitoring_db.window_frames import Answers, ShadowPairs
from mlops_stack.names import higher_is_better
from mlops_stack.registry import Registry, task_of, version_of
from mlops_stack.stack import Stack

LIVE_EVALUATION = "live"
"""Start of ``gate.evaluation_data`` on a version the live gate promoted."""
COMPARISON_ARTIFACT = "challenger/comparison.json"


@dataclass(frozen=True)
class Comparison:
    """The champion and the shadow challenger on the same live labelled rows, and the verdict.

    ``decision`` is the text stored and shown (the live gate's reason, plus what was done);
    ``promoted`` whether this run moved the champion alias to the challenger.
    """

    version: str
    champion_version: str
    shadow_rows: int
    labelled_rows: int
    metric: str
    champion: dict[str, float | None]
    challenger: dict[str, float | None]
    decision: str
    promote: bool = False  # the live gate's verdict
    promoted: bool = False  # what this run did about it
    min_labelled: int = 0
    higher_is_better: bool = True
    gate: GateDecision | None = None  # the live gate's decision, for the version's record

    def as_json(self) -> dict[str, Any]:
        """What ``monitor_runs.challenger`` stores (JSON) and the dashboard reads."""
        return {
            "version": self.version,
            "champion_version": self.champion_version,
            "shadow_rows": self.shadow_rows,
            "labelled_rows": self.labelled_rows,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "min_labelled": self.min_labelled,
            "champion": self.champion,
            "challenger": self.challenger,
            "decision": self.decision,
            "promote": self.promote,
            "promoted": self.promoted,
        }


def score(pairs: ShadowPairs, schema: DatasetSchema) -> tuple[ModelQuality, ModelQuality] | None:
    """Both versions' quality on the same labelled rows; None when no row is labelled."""

    def quality(answers: Answers) -> ModelQuality | None:
        return model_quality(
            pairs.labels, answers.predictions, answers.probabilities, schema.classes, schema
        )

    if pairs.labelled_rows == 0:
        return None
    champion, challenger = quality(pairs.champion), quality(pairs.challenger)
    if champion is None or challenger is None:
        return None
    return champion, challenger


def compare(
    pairs: ShadowPairs,
    schema: DatasetSchema,
    *,
    version: str,
    champion_version: str,
    options: LivePromotionOptions,
) -> Comparison:
    """Score both versions on the pairs and let the live gate decide (nothing is moved here)."""
    try:
        metric = resolve_metric(options.metric, schema.task)
    except GateConfigError as exc:
        return Comparison(
            version, champion_version, pairs.shadow_rows, pairs.labelled_rows,
            options.metric, {}, {}, f"no decision: {exc}",
        )  # fmt: skip
    scored = score(pairs, schema)
    champion, challenger = (dict(q.metrics) for q in scored) if scored else ({}, {})
    labelled = scored[0].labelled_rows if scored else 0
    decision = live_decision(
        champion,
        challenger,
        labelled,
        metric=metric,
        min_improvement=options.min_improvement,
        min_labelled=options.min_labelled,
        champion_version=champion_version,
    )
    text = decision.reason
    if decision.promote and not options.enabled:
        text += "; live promotion is off (MLOPS_LIVE_PROMOTION_ENABLED=false): kept as challenger"
    return Comparison(
        version=version,
        champion_version=champion_version,
        shadow_rows=pairs.shadow_rows,
        labelled_rows=labelled,
        metric=metric,
        champion=champion,
        challenger=challenger,
        decision=text,
        promote=decision.promote,
        min_labelled=options.min_labelled,
        higher_is_better=higher_is_better(metric),
        gate=decision,
    )


def promote_live(stack: Stack, comparison: Comparison, window: str) -> Comparison:
    """Make the winning challenger champion, recorded and announced as the gate's decision.

    The registry is read again first: when a person (or a retrain) moved an alias since the
    comparison began, the comparison is about versions that no longer hold those roles, and
    nothing is promoted.
    """
    registry = stack.registry
    if not _roles_unchanged(registry, comparison):
        return replace(
            comparison,
            decision=f"{comparison.decision}; not promoted: the aliases changed meanwhile",
        )
    decision = comparison.gate
    if decision is None:  # nothing decided: nothing to record (a caller's mistake)
        raise ValueError(f"no live gate decision to promote v{comparison.version} on")
    registry.record_decision(
        comparison.version,
        decision,
        f"{LIVE_EVALUATION}: {comparison.labelled_rows} labelled rows of {window} that both "
        "versions answered",
    )
    registry.make_champion(comparison.version)  # tells the predictors
    promoted = replace(
        comparison,
        promoted=True,
        decision=f"{comparison.decision}; v{comparison.version} promoted to champion",
    )
    stack.notifier.announce(
        f"live promotion: v{comparison.version} replaces v{comparison.champion_version} as "
        f"champion: {decision.reason}",
        {"model": registry.model_name, **promoted.as_json()},
    )
    return promoted


def _roles_unchanged(registry: Registry, comparison: Comparison) -> bool:
    champion, challenger = registry.champion(), registry.challenger()
    return (
        champion is not None
        and challenger is not None
        and version_of(champion) == comparison.champion_version
        and version_of(challenger) == comparison.version
    )


def log_comparison(stack: Stack, mlflow_run_id: str, comparison: Comparison) -> None:
    """The comparison on the monitor's MLflow run: figures as metrics, the whole as JSON."""
    now = int(time.time() * 1000)
    metrics = [Metric("live.labelled_rows", comparison.labelled_rows, now, 0)]
    metrics += [Metric("live.shadow_rows", comparison.shadow_rows, now, 0)]
    for side, values in (("champion", comparison.champion), ("challenger", comparison.challenger)):
        metrics += [
            Metric(f"live.{side}.{name}", float(value), now, 0)
            for name, value in values.items()
            if value is not None
        ]
    tags = [
        RunTag("challenger.version", comparison.version),
        RunTag("challenger.decision", comparison.decision[:4000]),
        RunTag("challenger.promoted", str(comparison.promoted).lower()),
    ]
    client = stack.registry.client
    client.log_batch(mlflow_run_id, metrics=metrics, tags=tags)
    client.log_dict(mlflow_run_id, comparison.as_json(), COMPARISON_ARTIFACT)


@task(cache_policy=NO_CACHE)
def judge_challenger(
    stack: Stack,
    *,
    champion_version: str,
    schema: DatasetSchema,
    since: datetime | None,
    limit: int | None,
    mlflow_run_id: str | None,
) -> Comparison | None:
    """Compare the challenger (if any) with the champion on the window; promote a winner.

    None when there is no challenger, when it answered no row of the window in shadow (shadow
    scoring off, or it became challenger after these rows), or when it predicts another task
    than the champion (nothing to compare). How it judges and whether it promotes is the
    run's settings' (:class:`~mlops_stack.flows.parameters.LivePromotionOptions`).
    """
    logger = run_logger()
    registry = stack.registry
    mv = registry.challenger()
    if mv is None:
        return None
    version = version_of(mv)
    if version == champion_version or task_of(mv) is not schema.task:
        logger.info("challenger v%s not compared: it is not a %s challenger", version, schema.task)
        return None
    pairs = stack.monitor_store.shadow_pairs(
        since,
        limit,
        model_name=registry.model_name,
        challenger_version=version,
        champion_version=champion_version,
    )
    if pairs.shadow_rows == 0:
        logger.info("challenger v%s answered no row of the window in shadow", version)
        return None
    options = LivePromotionOptions.from_settings(stack.settings)
    comparison = compare(
        pairs, schema, version=version, champion_version=champion_version, options=options
    )
    if comparison.promote and options.enabled:
        window = f"the last {limit} rows" if limit else f"the rows since {since}"
        comparison = promote_live(stack, comparison, window)
    if mlflow_run_id:
        log_comparison(stack, mlflow_run_id, comparison)
    logger.info("challenger v%s: %s", version, comparison.decision)
    return comparison
