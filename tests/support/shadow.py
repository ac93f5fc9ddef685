"""A champion, a challenger the gate refused, and live traffic both answered (the shadow log).

The registry is real: ``train_flow`` registers v1 (champion), then trains again on the same
table, which ties, so the gate keeps v2 as ``challenger`` with its reason, exactly as a refused
retrain leaves one. The traffic is written the way the predictor writes it: the champion's
answers in ``predictions``, the challenger's in shadow (``PredictionRecord(shadow=True)``) under
the same ``(request_id, row)``, labels through feedback. Who is right on which row is chosen
here, so every expected figure is computed from the written rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from mlops_stack.data import load_dataset
from mlops_stack.flows.train import train_flow
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.registry import version_of
from mlops_stack.stack import current_stack
from tests.support.monitoring import Monitoring


def champion_and_challenger() -> tuple[str, str]:
    """v1 champion, v2 the gate's refused challenger (a tie keeps the champion)."""
    first, second = train_flow(), train_flow()
    assert first.promoted and not second.promoted, second.reason
    registry = current_stack().registry
    champion, challenger = registry.champion(), registry.challenger()
    assert champion is not None and challenger is not None
    return version_of(champion), version_of(challenger)


@dataclass(frozen=True)
class Answers:
    """What one version answered on the compared rows: classes and P(class 1)."""

    predicted: np.ndarray
    p1: np.ndarray

    def accuracy(self, labels: np.ndarray) -> float:
        return float(accuracy_score(labels, self.predicted))

    def roc_auc(self, labels: np.ndarray) -> float:
        return float(roc_auc_score(labels, self.p1))


def _answers(labels: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> Answers:
    """Classes right where ``right``, wrong elsewhere; a confident P(class 1) that agrees."""
    predicted = np.where(right, labels, 1 - labels)
    confidence = rng.uniform(0.6, 0.95, len(labels))
    return Answers(predicted, np.where(predicted == 1, confidence, 1 - confidence))


@dataclass(frozen=True)
class ShadowTraffic:
    """The rows a monitor window of ``compared + unanswered`` rows compares, and their answers."""

    labels: np.ndarray  # of the compared rows (labelled, answered by both)
    champion: Answers
    challenger: Answers


def log_shadow_traffic(
    settings,
    *,
    champion: str,
    challenger: str,
    compared: int = 300,
    unanswered: int = 20,
    older: int = 40,
    champion_right: float = 0.2,
    challenger_right: float = 0.9,
    seed: int = 0,
) -> ShadowTraffic:
    """Write, oldest first: ``older`` rows outside the window (both answered and labelled, the
    challenger always wrong there), ``unanswered`` labelled rows the challenger never answered,
    then ``compared`` labelled rows both answered, the champion right on a ``champion_right``
    share of them and the challenger on a ``challenger_right`` share.

    A window of the newest ``unanswered + compared`` rows must compare exactly the last ones.
    """
    rng = np.random.default_rng(seed)
    dataset = load_dataset(None, "target")
    total = older + unanswered + compared
    picked = dataset.features.sample(n=total, replace=True, random_state=seed)
    labels = dataset.labels.loc[picked.index].to_numpy().astype(int)
    right = {
        "champion": rng.random(total) < champion_right,
        "challenger": rng.random(total) < challenger_right,
    }
    right["challenger"][:older] = False
    answers = {side: _answers(labels, right[side], rng) for side in right}
    start = datetime.now(UTC) - timedelta(minutes=5)
    records: list[PredictionRecord] = []
    for i, features in enumerate(picked.to_dict("records")):
        at = start + timedelta(milliseconds=10 * i)
        for side, version in (("champion", champion), ("challenger", challenger)):
            if side == "challenger" and older <= i < older + unanswered:
                continue
            p1 = float(answers[side].p1[i])
            records.append(
                PredictionRecord(
                    request_id=f"req-{i}",
                    row=0,
                    created_at=at,
                    model_name=settings.model_name,
                    model_version=version,
                    features=features if side == "champion" else {},
                    prediction=int(answers[side].predicted[i]),
                    probabilities={"0": 1 - p1, "1": p1},
                    latency_ms=1.0,
                    shadow=side == "challenger",
                )
            )
    store = Monitoring(settings.resolved_monitoring_db_url)
    store.predictions.write_predictions(records)
    store.predictions.record_feedback(
        [(f"req-{i}", 0, str(label)) for i, label in enumerate(labels)]
    )
    window = slice(older + unanswered, total)
    return ShadowTraffic(
        labels=labels[window],
        champion=Answers(answers["champion"].predicted[window], answers["champion"].p1[window]),
        challenger=Answers(
            answers["challenger"].predicted[window], answers["challenger"].p1[window]
        ),
    )


def expected_figures(traffic: ShadowTraffic) -> dict[str, dict[str, float]]:
    """Accuracy and ROC AUC of both versions on the compared rows, by scikit-learn."""
    return {
        side: {
            "accuracy": answers.accuracy(traffic.labels),
            "roc_auc": answers.roc_auc(traffic.labels),
        }
        for side, answers in (("champion", traffic.champion), ("challenger", traffic.challenger))
    }
