"""Candidate models and their evaluation.

Every candidate is one scikit-learn Pipeline with its preprocessing inside (imputation, scaling,
one-hot encoding), so the logged model takes the raw feature columns that training took and
serving cannot drift from training. Candidates are chosen by cross-validation on the training
split, then scored once on the holdout: the holdout stays an honest estimate for the gate.

A large training split (more rows than ``MLOPS_SELECTION_MAX_ROWS``) is not cross-validated
whole: every candidate is cross-validated and fitted on a seeded (stratified) sample of it, and
only the winner is refit on every training row (:func:`selection_sample`,
:func:`for_refit`), so the time and memory of model selection stay bounded whatever the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, make_scorer, precision_score, recall_score
from sklearn.model_selection import (
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # sklearn dep

from mlops_stack import metrics
from mlops_stack.data import DatasetSchema
from mlops_stack.metrics import Figures
from mlops_stack.names import (
    ACCURACY,
    F1,
    LATENCY_P95,
    MAE,
    PRECISION,
    R2,
    RECALL,
    REGRESSION_HOLDOUT_METRICS,
    RMSE,
    ROC_AUC,
    Task,
    higher_is_better,
)
from mlops_stack.preprocessing import build_preprocessor

CANDIDATE_NAMES = ("linear", "random_forest", "hist_gradient_boosting")
"""Task-neutral candidate names: ``linear`` is a logistic regression for classification and a
ridge regression for regression; the two tree ensembles are the task's classifier or regressor."""

CANDIDATE_ALIASES = {"logistic_regression": "linear"}
"""Older names still accepted (``MLOPS_CANDIDATES=logistic_regression`` keeps working)."""


def canonical_candidate(name: str) -> str:
    """The candidate ``name`` stands for (an alias resolved); ValueError for an unknown name."""
    canonical = CANDIDATE_ALIASES.get(name, name)
    if canonical not in CANDIDATE_NAMES:
        known = [*CANDIDATE_NAMES, *CANDIDATE_ALIASES]
        raise ValueError(f"unknown candidate {name!r}; choose from {known}")
    return canonical


@dataclass(frozen=True)
class Split:
    """A seeded train/holdout split of features and labels (stratified for classes)."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


@dataclass
class CandidateResult:
    """A fitted candidate with its CV score, holdout metrics and hyper-parameters.

    ``cv_score`` is in the metric's own units (an RMSE is positive): compare candidates with
    :func:`best_candidate`, which knows the metric's direction. A holdout figure undefined on
    the holdout is None (:mod:`mlops_stack.metrics`).
    """

    name: str
    pipeline: Pipeline
    params: dict[str, object]
    cv_score: float
    metrics: Figures = field(default_factory=dict)
    fit_rows: int = 0  # training rows the logged pipeline was fitted on
    selection_rows: int = 0  # training rows its CV score comes from (a sample of a large split)


def split_data(
    features: pd.DataFrame,
    labels: pd.Series,
    *,
    test_size: float,
    seed: int,
    task: Task | str = Task.CLASSIFICATION,
) -> Split:
    """Seeded split; stratified for classification so every class appears in the holdout in its
    training proportion (a numeric target has no classes to stratify on)."""
    stratify = labels if Task(task) is Task.CLASSIFICATION else None
    X_train, X_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=stratify
    )
    return Split(X_train, X_test, y_train, y_test)


def _estimators(task: Task, seed: int) -> dict[str, tuple[BaseEstimator, bool]]:
    """Candidate name -> (estimator for ``task``, whether numeric features are scaled first).

    The same three families for both tasks, so ``MLOPS_CANDIDATES`` means the same everywhere.
    """
    regression = task is Task.REGRESSION
    linear = (
        Ridge(alpha=1.0, random_state=seed)
        if regression
        else LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    )
    forest = RandomForestRegressor if regression else RandomForestClassifier
    boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    return {
        "linear": (linear, True),
        # n_jobs=1: a single-row predict is ~4x faster than with a process pool.
        "random_forest": (
            forest(n_estimators=200, min_samples_leaf=1, n_jobs=1, random_state=seed),
            False,
        ),
        "hist_gradient_boosting": (
            boosting(max_iter=200, learning_rate=0.1, random_state=seed),
            False,
        ),
    }


def build_candidates(
    schema: DatasetSchema, seed: int, names: Sequence[str] | None = None
) -> dict[str, Pipeline]:
    """One unfitted Pipeline (preprocessing + estimator) per candidate, in ``names`` order.

    The estimators are those of the schema's task; the dict is keyed by the names asked for
    (an alias stays its caller's key).
    """
    estimators = _estimators(Task(schema.task), seed)
    return {
        name: Pipeline(
            [("preprocess", build_preprocessor(schema, scale=scale)), ("model", estimator)]
        )
        for name in (names or CANDIDATE_NAMES)
        for estimator, scale in [estimators[canonical_candidate(name)]]
    }


def selection_sample(
    X: pd.DataFrame, y: pd.Series, *, max_rows: int, seed: int, task: Task | str
) -> tuple[pd.DataFrame, pd.Series]:
    """At most ``max_rows`` training rows to choose a candidate on: all of them when they fit,
    else a seeded sample, stratified by class for classification so rare classes keep their
    share. Indices only are drawn, so the rows left out are never copied."""
    if len(X) <= max_rows:
        return X, y
    stratified = Task(task) is Task.CLASSIFICATION
    splitter = (
        StratifiedShuffleSplit(n_splits=1, train_size=max_rows, random_state=seed)
        if stratified
        else ShuffleSplit(n_splits=1, train_size=max_rows, random_state=seed)
    )
    rows, _ = next(splitter.split(X, y if stratified else None))
    rows.sort()  # keep the table's order: a sample reads like the table it came from
    return X.iloc[rows], y.iloc[rows]


def for_refit(pipeline: Pipeline, max_rows: int, rows: int) -> Pipeline:
    """An unfitted copy of a chosen pipeline to refit on ``rows`` training rows.

    A random forest grows every tree on a bootstrap of the training rows: on a large table,
    each tree draws at most ``max_rows`` of them (``max_samples``), so the refit costs what a
    fit on the selection sample cost and the model stays as small, while the forest as a whole
    still sees every row. Other estimators scale linearly and are refit as they are.
    """
    refit = clone(pipeline)
    model = refit.named_steps["model"]
    if "max_samples" in model.get_params() and rows > max_rows:
        refit.set_params(model__max_samples=max_rows)
    return refit


PARALLEL_MIN_ROWS = 10_000
"""Fewer training rows than this are fitted on one thread: threads only add overhead there."""


@contextmanager
def fitting_threads(pipeline: Pipeline, rows: int) -> Iterator[Pipeline]:
    """Fit a forest on every core when the table is large enough to gain; OpenMP on one.

    A forest is stored with ``n_jobs=1`` (a single-row predict is ~4x faster without a thread
    pool) but fitting 200 trees on many rows is embarrassingly parallel, so from
    ``PARALLEL_MIN_ROWS`` rows it gets every core (Python threads) while it fits.

    OpenMP (gradient boosting's histograms) is held to one thread while fitting: its threads
    spin-wait on each other, and on a busy 2-core machine (the predictor, the databases and a
    training share it) a fit took 20x longer on two threads than on one (44 s against 2 s on
    80,000 rows, and minutes on 20,000 rows x 5 folds); on an idle machine one thread costs
    under 2x. Cross-validation clones the pipeline with the setting of the moment.
    """
    model = pipeline.named_steps["model"]
    forest = "n_jobs" in model.get_params() and "n_estimators" in model.get_params()
    if forest and rows >= PARALLEL_MIN_ROWS:
        pipeline.set_params(model__n_jobs=-1)
    try:
        with threadpool_limits(limits=1, user_api="openmp"):
            yield pipeline
    finally:
        if forest:
            pipeline.set_params(model__n_jobs=1)


def candidate_params(pipeline: Pipeline) -> dict[str, object]:
    """The estimator's hyper-parameters, as logged to MLflow."""
    params = pipeline.named_steps["model"].get_params()
    return {k: v for k, v in params.items() if isinstance(v, int | float | str | bool | None)}


def estimator_task(model: BaseEstimator) -> Task:
    """The task a fitted or unfitted estimator (or Pipeline) performs: what scikit-learn says
    it is. (What a registered version predicts is ``registry.task_of``: its tag first.)"""
    return Task.CLASSIFICATION if is_classifier(model) else Task.REGRESSION


def best_candidate(results: Sequence[CandidateResult], metric: str) -> CandidateResult:
    """The candidate with the best CV score, in the metric's direction (lowest RMSE, highest
    ROC AUC); the first listed wins a tie, so the choice is deterministic."""
    if higher_is_better(metric):
        return max(results, key=lambda r: r.cv_score)
    return min(results, key=lambda r: r.cv_score)


def cross_validate(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    folds: int,
    seed: int,
    metric: str,
) -> float:
    """Mean CV score of ``metric`` on training rows, in the metric's units (RMSE positive).

    Classification folds are stratified; regression folds are plain shuffled K-fold.
    """
    splitter = StratifiedKFold if estimator_task(pipeline) is Task.CLASSIFICATION else KFold
    cv = splitter(n_splits=folds, shuffle=True, random_state=seed)
    scorer, sign = _sklearn_scorer(metric, y)
    scores = cross_val_score(pipeline, X, y, cv=cv, scoring=scorer)
    return sign * float(np.mean(scores))


_REGRESSION_SCORERS = {
    RMSE: "neg_root_mean_squared_error",
    MAE: "neg_mean_absolute_error",
    R2: "r2",
}


def _sklearn_scorer(metric: str, labels: pd.Series) -> tuple[Any, float]:
    """scikit-learn's scorer for ``metric`` and the sign turning its score into the metric.

    scikit-learn maximises every score, so errors come negated (``neg_root_mean_squared_error``)
    and are turned back into positive errors here. Binary F1/precision/recall score the positive
    class as :func:`evaluate` does (``metrics.positive_class``), so that string class names work.
    """
    if metric in _REGRESSION_SCORERS:
        scorer = _REGRESSION_SCORERS[metric]
        return scorer, -1.0 if scorer.startswith("neg_") else 1.0
    classes = list(labels.unique())
    binary = len(classes) == 2
    if metric == ROC_AUC:
        return ("roc_auc" if binary else "roc_auc_ovr"), 1.0
    if metric == ACCURACY:
        return "accuracy", 1.0
    functions = {F1: f1_score, PRECISION: precision_score, RECALL: recall_score}
    if metric not in functions:
        raise ValueError(f"no cross-validation scorer for metric {metric!r}")
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": _typed_positive(classes)}
        if binary
        else {"average": "macro"}
    )
    return make_scorer(functions[metric], zero_division=0, **averaging), 1.0


def _typed_positive(classes: list[Any]) -> Any:
    """The positive class among typed labels: the one whose text is ``metrics.positive_class``."""
    texts = list(metrics.class_text(classes))
    return classes[texts.index(metrics.positive_class(classes))]


def evaluate(model: Any, X: pd.DataFrame, y: pd.Series) -> Figures:
    """The holdout metrics of a fitted model on labelled rows, for the model's task.

    Regression: RMSE, MAE and R^2 (``names.REGRESSION_HOLDOUT_METRICS``). Classification:
    accuracy, F1, ROC AUC, precision and recall (``names.HOLDOUT_METRICS``); binary targets
    report the positive class, multi-class targets the macro average and one-vs-rest ROC AUC.
    Class labels may be text (``'barolo'``). Scored by :mod:`mlops_stack.metrics`, as the
    monitor scores live rows; a figure undefined on these rows (ROC AUC of one class, R^2 of a
    constant target) is None.
    """
    predicted = model.predict(X)
    if estimator_task(model) is Task.REGRESSION:
        actual = pd.to_numeric(y).to_numpy(dtype=float)
        figures = metrics.regression_scores(actual, predicted)
        return {name: figures[name] for name in REGRESSION_HOLDOUT_METRICS}
    classes = list(model.classes_)
    probabilities = pd.DataFrame(model.predict_proba(X), columns=metrics.class_text(classes))
    return metrics.classification_scores(y, predicted, classes, probabilities)


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
