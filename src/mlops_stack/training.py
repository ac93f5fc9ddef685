"""Candidate models and their evaluation.

Every candidate is one scikit-learn Pipeline with its preprocessing inside (imputation, scaling,
one-hot encoding), so the logged model takes the raw feature columns that training took and
serving cannot drift from training. Candidates are chosen by cross-validation on the training
split, then scored once on the holdout: the holdout stays an honest estimate for the gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from mlops_stack.data import DatasetSchema
from mlops_stack.names import ACCURACY, F1, LATENCY_P95, PRECISION, RECALL, ROC_AUC
from mlops_stack.preprocessing import build_preprocessor

CANDIDATE_NAMES = ("logistic_regression", "random_forest", "hist_gradient_boosting")


@dataclass(frozen=True)
class Split:
    """A stratified, seeded train/holdout split of features and labels."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


@dataclass
class CandidateResult:
    """A fitted candidate with its CV score, holdout metrics and hyper-parameters."""

    name: str
    pipeline: Pipeline
    params: dict[str, object]
    cv_score: float
    metrics: dict[str, float] = field(default_factory=dict)


def split_data(features: pd.DataFrame, labels: pd.Series, *, test_size: float, seed: int) -> Split:
    """Stratified split so every class appears in the holdout in its training proportion."""
    X_train, X_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Split(X_train, X_test, y_train, y_test)


def _estimators(seed: int) -> dict[str, tuple[ClassifierMixin, bool]]:
    """Candidate name -> (estimator, whether numeric features are scaled first)."""
    return {
        "logistic_regression": (LogisticRegression(max_iter=2000, C=1.0, random_state=seed), True),
        "random_forest": (
            # n_jobs=1: a single-row predict is ~4x faster than with a process pool.
            RandomForestClassifier(
                n_estimators=200, min_samples_leaf=1, n_jobs=1, random_state=seed
            ),
            False,
        ),
        "hist_gradient_boosting": (
            HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed),
            False,
        ),
    }


def build_candidates(
    schema: DatasetSchema, seed: int, names: list[str] | None = None
) -> dict[str, Pipeline]:
    """One unfitted Pipeline (preprocessing + estimator) per candidate, in ``names`` order."""
    estimators = _estimators(seed)
    return {
        name: Pipeline(
            [("preprocess", build_preprocessor(schema, scale=scale)), ("model", estimator)]
        )
        for name in (names or CANDIDATE_NAMES)
        for estimator, scale in [estimators[name]]
    }


def candidate_params(pipeline: Pipeline) -> dict[str, object]:
    """The estimator's hyper-parameters, as logged to MLflow."""
    params = pipeline.named_steps["model"].get_params()
    return {k: v for k, v in params.items() if isinstance(v, int | float | str | bool | None)}


def cross_validate(
    pipeline: Pipeline, split: Split, *, folds: int, seed: int, metric: str
) -> float:
    """Mean CV score on the training split, the number used to pick the best candidate."""
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scorer = _sklearn_scorer(metric, split.y_train)
    scores = cross_val_score(pipeline, split.X_train, split.y_train, cv=cv, scoring=scorer)
    return float(np.mean(scores))


def _sklearn_scorer(metric: str, labels: pd.Series) -> str:
    binary = labels.nunique() == 2
    if metric == ROC_AUC:
        return "roc_auc" if binary else "roc_auc_ovr"
    if metric == ACCURACY:
        return "accuracy"
    return metric if binary else f"{metric}_macro"


def evaluate(model: ClassifierMixin, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, F1, ROC AUC, precision and recall of a fitted model on labelled rows.

    Binary targets report the positive class (the larger label when sorted); multi-class
    targets report the macro average and one-vs-rest ROC AUC.
    """
    predicted = model.predict(X)
    classes = list(model.classes_)
    binary = len(classes) == 2
    averaging: dict[str, object] = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro"}
    )
    proba = model.predict_proba(X)
    if binary:
        roc_auc = roc_auc_score(y == classes[1], proba[:, 1])
    else:
        roc_auc = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    return {  # the keys are names.HOLDOUT_METRICS
        ACCURACY: float(accuracy_score(y, predicted)),
        F1: float(f1_score(y, predicted, zero_division=0, **averaging)),
        ROC_AUC: float(roc_auc),
        PRECISION: float(precision_score(y, predicted, zero_division=0, **averaging)),
        RECALL: float(recall_score(y, predicted, zero_division=0, **averaging)),
    }


def single_row_latency(
    predict: Callable[[pd.DataFrame], object], X: pd.DataFrame, samples: int
) -> dict[str, float]:
    """p50/p95 milliseconds of one-row predictions, the shape of a typical /predict call."""
    rows = [X.iloc[[i % len(X)]] for i in range(samples)]
    predict(rows[0])  # warm-up: first call pays for lazy imports and caches
    timings = []
    for row in rows:
        start = time.perf_counter()
        predict(row)
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "latency_p50_ms": float(np.percentile(timings, 50)),
        LATENCY_P95: float(np.percentile(timings, 95)),
    }
