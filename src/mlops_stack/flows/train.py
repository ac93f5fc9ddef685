"""The train flow: validate -> split -> train candidates -> evaluate -> log -> register -> gate.

Each step is a Prefect task so a run shows in Prefect where it stopped and how long each step
took; the work itself lives in the data, training, modelstore and registry modules. One MLflow
parent run holds the dataset (fingerprint, source, size) and one child run per candidate with
its parameters, metrics and logged model; the best candidate is registered and handed to the
gate, which scores the champion on the very same holdout before deciding.

A training split larger than ``MLOPS_SELECTION_MAX_ROWS`` is sampled for model selection and
the winner alone is refit on all of it (see :mod:`mlops_stack.training`); the run's log says
so, and the parent run records it (``selection.*`` params, ``mlops.selection`` tag). Every step
logs its duration and the time since the run started: the progress of a long run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import infer_signature
from mlflow.types.schema import ColSpec, Schema
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops_stack import data as datamod
from mlops_stack import metrics as metricsmod
from mlops_stack import modelstore, training
from mlops_stack.flows.orchestration import flow, run_logger, task
from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.gate import GateDecision, decide, resolve_metric
from mlops_stack.names import Task
from mlops_stack.registry import TASK_TAG, Registry, task_of, version_of
from mlops_stack.stack import current_stack


@dataclass(frozen=True)
class TrainResult:
    """What one train run produced, for the CLI and for flows that call this one."""

    run_id: str
    model_name: str
    version: str
    candidate: str
    metrics: metricsmod.Figures  # holdout figures; None: undefined on the holdout
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    data_fingerprint: str
    task: str = Task.CLASSIFICATION
    columns: list[datamod.ColumnTreatment] = field(default_factory=list)
    """What was done with each column of the table (the schema's ``columns``)."""


@dataclass(frozen=True)
class Selection:
    """The training rows candidates are cross-validated and fitted on: all, or a sample."""

    X: pd.DataFrame
    y: pd.Series
    train_rows: int  # rows of the whole training split

    @property
    def sampled(self) -> bool:
        return len(self.X) < self.train_rows


class Progress:
    """Log lines of a run's steps with their duration and the time since the run started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.step_started = self.started
        self.logger = run_logger()

    def start(self, message: str, *args: object) -> None:
        self.step_started = time.perf_counter()
        self.logger.info(f"{message} ...", *args)

    def done(self, message: str, *args: object) -> None:
        now = time.perf_counter()
        step, total = now - self.step_started, now - self.started
        self.logger.info(f"{message} ({step:.1f} s; {total:.0f} s elapsed)", *args)


@dataclass(frozen=True)
class GateResult:
    """The registered version, the gate's decision, and the champion before and after it."""

    version: str
    decision: GateDecision
    champion_before: str | None
    champion_after: str | None


@task(cache_policy=NO_CACHE)
def load_and_validate(
    params: TrainParameters,
) -> tuple[datamod.Dataset, datamod.DatasetSchema]:
    """Load the table and refuse it with every problem named before any training starts."""
    dataset = datamod.load_dataset(params.data_path, params.target)
    task = datamod.infer_task(dataset.labels, params.task)
    datamod.validate_dataset(
        dataset, task=task, min_rows=params.min_rows, min_class_rows=params.min_class_rows
    )
    schema = datamod.infer_schema(dataset, task, max_categories=params.max_categories)
    for column in schema.columns:
        if not column.plain:
            run_logger().info("column %s", column)
    return dataset, schema


@task(cache_policy=NO_CACHE)
def split(
    dataset: datamod.Dataset, schema: datamod.DatasetSchema, params: TrainParameters
) -> training.Split:
    """Seeded holdout split, stratified by class for classification."""
    return training.split_data(
        dataset.features,
        dataset.labels,
        test_size=params.test_size,
        seed=params.random_seed,
        task=schema.task,
    )


@task(cache_policy=NO_CACHE)
def select_rows(
    data: training.Split, schema: datamod.DatasetSchema, params: TrainParameters
) -> Selection:
    """The whole training split, or a seeded sample of ``selection_max_rows`` of a larger one."""
    X, y = training.selection_sample(
        data.X_train,
        data.y_train,
        max_rows=params.selection_max_rows,
        seed=params.random_seed,
        task=schema.task,
    )
    return Selection(X, y, train_rows=len(data.X_train))


@task(cache_policy=NO_CACHE)
def train_candidate(
    name: str,
    pipeline: Pipeline,
    data: training.Split,
    selection: Selection,
    params: TrainParameters,
) -> training.CandidateResult:
    """Cross-validate on the selection rows, fit on all of them, score on the holdout."""
    metric = params.gate.metric
    with training.fitting_threads(pipeline, len(selection.X)):
        cv_score = training.cross_validate(
            pipeline,
            selection.X,
            selection.y,
            folds=params.cv_folds,
            seed=params.random_seed,
            metric=metric,
        )
        pipeline.fit(selection.X, selection.y)
        rows = len(selection.X)
        return _scored(name, pipeline, cv_score, data, params, rows, rows)


@task(cache_policy=NO_CACHE)
def refit_winner(
    best: training.CandidateResult, data: training.Split, params: TrainParameters
) -> training.CandidateResult:
    """Refit the candidate chosen on a sample on every training row; score it on the holdout."""
    pipeline = training.for_refit(best.pipeline, params.selection_max_rows, len(data.X_train))
    rows = len(data.X_train)
    with training.fitting_threads(pipeline, rows):
        pipeline.fit(data.X_train, data.y_train)
        return _scored(best.name, pipeline, best.cv_score, data, params, rows, best.selection_rows)


def _scored(
    name: str,
    pipeline: Pipeline,
    cv_score: float,
    data: training.Split,
    params: TrainParameters,
    fit_rows: int,
    selection_rows: int,
) -> training.CandidateResult:
    """A fitted candidate with its holdout metrics, one-row latency and CV score."""
    metrics = training.evaluate(pipeline, data.X_test, data.y_test)
    metrics |= training.single_row_latency(pipeline.predict, data.X_test, params.latency_samples)
    metrics[f"cv_{params.gate.metric}"] = cv_score
    return training.CandidateResult(
        name=name,
        pipeline=pipeline,
        params=training.candidate_params(pipeline),
        cv_score=cv_score,
        metrics=metrics,
        fit_rows=fit_rows,
        selection_rows=selection_rows,
    )


@task(cache_policy=NO_CACHE)
def log_candidates(
    results: list[training.CandidateResult],
    dataset: datamod.Dataset,
    schema: datamod.DatasetSchema,
    data: training.Split,
    selection: Selection,
    params: TrainParameters,
) -> tuple[str, dict[str, str], str]:
    """Log a parent run and one child run (params, metrics, model) per candidate.

    Returns the parent run id, candidate name -> model URI, and the data fingerprint.
    """
    digest = datamod.fingerprint(dataset.frame)
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags(
            {
                "mlops.role": "train",
                "mlops.trigger": params.trigger,
                TASK_TAG: str(schema.task),
                "mlops.selection": "sampled" if selection.sampled else "all rows",
                "data.fingerprint": digest,
                "data.source": dataset.source,
            }
        )
        mlflow.log_params(
            {
                "data.rows": len(dataset.frame),
                "data.target": dataset.target,
                "data.features": len(schema.features),
                "data.task": str(schema.task),
                "gate.metric": params.gate.metric,
                "test_size": params.test_size,
                "seed": params.random_seed,
                "cv_folds": params.cv_folds,
                "selection.max_rows": params.selection_max_rows,
                "selection.rows": len(selection.X),
                "selection.train_rows": selection.train_rows,
            }
        )
        with modelstore.quiet_mlflow_hints():
            mlflow.log_input(_training_data_input(dataset), context="training")
        # the signature's types and the reference sample come from at most LOGGED_ROWS rows
        logged_rows = _at_most(data.X_train, LOGGED_ROWS, params.random_seed)
        uris = {}
        for result in results:
            with mlflow.start_run(run_name=result.name, nested=True):
                mlflow.set_tags(
                    {
                        "mlops.role": "candidate",
                        "mlops.candidate": result.name,
                        TASK_TAG: str(schema.task),
                        "data.fingerprint": digest,
                    }
                )
                mlflow.log_params(
                    result.params
                    | {"fit_rows": result.fit_rows, "selection_rows": result.selection_rows}
                )
                _log_metrics(result.metrics)
                uris[result.name] = modelstore.log_pipeline(
                    result.pipeline,
                    logged_rows,
                    schema,
                    reference_rows=params.reference_sample_rows,
                    seed=params.random_seed,
                    X_holdout=data.X_test,
                )
    return parent.info.run_id, uris, digest


UNDEFINED_TAG = "mlops.undefined_metrics"
"""Names the holdout figures a candidate run lacks because they were undefined on the holdout."""


def _log_metrics(figures: metricsmod.Figures) -> None:
    """Log the defined figures to the active run; name the undefined ones in a tag and the log.

    MLflow takes floats only, and a stand-in (NaN, 0) would read as measured: an undefined
    figure (ROC AUC of a one-class holdout, R^2 of a constant target) is left out, and the run
    says which and why, so that its absence is not mistaken for a metric nobody computed.
    """
    mlflow.log_metrics(metricsmod.defined(figures))
    missing = metricsmod.undefined(figures)
    if missing:
        mlflow.set_tag(UNDEFINED_TAG, ", ".join(missing))
        run_logger().warning(
            "holdout %s undefined, not logged to MLflow: %s",
            ", ".join(missing),
            "; ".join(metricsmod.why_undefined(name) for name in missing),
        )


LOGGED_ROWS = 50_000
"""Rows MLflow infers a logged table's or model's column types from. It visits every value in
Python: 24 s for the 1.5-million-row table of docs/performance.md, and about 16 s per logged
model's signature, where a uniform sample of this many rows gives the same types."""


def _at_most(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``frame`` itself when it has at most ``rows`` rows, else a seeded uniform sample."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _training_data_input(dataset: datamod.Dataset) -> PandasDataset:
    """The training table as an MLflow dataset input (source, digest, size, column types).

    A large table's column types are inferred on a sample, and whether a column is required
    from every row (vectorised), instead of MLflow's value-by-value pass over the whole table.
    """
    frame = dataset.frame
    logged: PandasDataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]  # lazily exported
        frame,
        targets=dataset.target,
        name="training-data",
        source=None if dataset.builtin else dataset.source,
    )
    if len(frame) > LOGGED_ROWS:
        inferred = infer_signature(_at_most(frame, LOGGED_ROWS, seed=0)).inputs
        missing = frame.isna().any()
        logged.schema = Schema(
            [
                ColSpec(column.type, column.name, required=not bool(missing[column.name]))
                for column in inferred.inputs
            ]
        )
    return logged


def _score_champion(
    registry: Registry, X: pd.DataFrame, y: pd.Series, task: Task
) -> tuple[str | None, metricsmod.Figures | None, str | None]:
    """Champion version and its metrics on the gate's data, or why it could not be scored.

    A champion of another task (a regressor against a new classifier) is not compared at all:
    its metrics are not the candidate's, and numeric class labels would even let it "score".
    """
    champion = registry.champion()
    if champion is None:
        return None, None, None
    number = version_of(champion)
    champion_task = task_of(champion)
    if champion_task is not task:
        return number, None, f"it is a {champion_task} model and this one is {task}"
    try:
        model = modelstore.load_pipeline(f"models:/{registry.model_name}/{number}")
        return number, training.evaluate(model, X, y), None
    except Exception as exc:  # a champion trained on other columns or classes cannot score
        return number, None, f"{type(exc).__name__}: {exc}"


@task(cache_policy=NO_CACHE)
def register_and_gate(
    best: training.CandidateResult,
    model_uri: str,
    data: training.Split,
    params: TrainParameters,
    evaluation: datamod.Dataset | None = None,
) -> GateResult:
    """Register the best candidate, score it and the champion on the same data, apply the gate.

    The data is the holdout, or ``evaluation`` when given: a retrain passes freshly labelled
    rows the candidate did not train on, because that is where the champion is in question.
    """
    registry = current_stack().registry
    X, y = (
        (data.X_test, data.y_test)
        if evaluation is None
        else (evaluation.features, evaluation.labels)
    )
    candidate = best.metrics if evaluation is None else training.evaluate(best.pipeline, X, y)
    task = training.estimator_task(best.pipeline)
    champion_version, champion_metrics, error = _score_champion(registry, X, y, task)
    version = registry.register(model_uri, task)
    decision = decide(
        candidate,
        champion_metrics,
        metric=params.gate.metric,
        bounds=params.gate.bounds,
        min_improvement=params.gate.min_improvement,
        champion_version=champion_version,
        champion_error=error,
    )
    registry.record_decision(version, decision, datamod.fingerprint(pd.concat([X, y], axis=1)))
    if decision.promote:
        registry.make_champion(version)  # announces the change to the predictors
    else:
        registry.make_challenger(version)
    after = registry.champion()
    return GateResult(version, decision, champion_version, version_of(after) if after else None)


def _train_candidates(
    schema: datamod.DatasetSchema,
    data: training.Split,
    selection: Selection,
    params: TrainParameters,
    progress: Progress,
) -> list[training.CandidateResult]:
    """Every candidate cross-validated, fitted and scored, one progress line each."""
    pipelines = training.build_candidates(schema, params.random_seed, params.candidates)
    results = []
    for number, (name, pipeline) in enumerate(pipelines.items(), start=1):
        progress.start(
            "candidate %d/%d %s: %d-fold CV and fit on %s rows",
            number,
            len(pipelines),
            name,
            params.cv_folds,
            f"{len(selection.X):,}",
        )
        result = train_candidate(name, pipeline, data, selection, params)
        metric = params.gate.metric
        progress.done(
            "candidate %s: cv_%s %.4f, holdout %s %s",
            name,
            metric,
            result.cv_score,
            metric,
            metricsmod.shown(result.metrics[metric]),
        )
        results.append(result)
    return results


@flow(name="train")
def train_flow(params: TrainParameters | None = None) -> TrainResult:
    """Train candidates on a table, register the best and let the gate decide its alias.

    ``params`` None takes every option from the settings (``MLOPS_*``).
    """
    stack = current_stack()
    params = params or TrainParameters.from_settings(stack.settings)
    logger = run_logger()
    stack.registry.use_experiment(stack.settings.experiment_name)
    progress = Progress()
    progress.start("loading and validating the table")
    dataset, schema = load_and_validate(params)
    # "auto" becomes the task's metric; a metric of the other task stops here, named
    metric = resolve_metric(params.gate.metric, schema.task)
    params = params.model_copy(update={"gate": params.gate.model_copy(update={"metric": metric})})
    progress.done(
        "%s rows, %d features; task %s, gate metric %s",
        f"{len(dataset.frame):,}",
        len(schema.features),
        schema.task,
        metric,
    )
    evaluation = (
        datamod.load_dataset(params.evaluation_path, params.target)
        if params.evaluation_path
        else None
    )
    data = split(dataset, schema, params)
    selection = select_rows(data, schema, params)
    if selection.sampled:
        logger.info(
            "the training split has %s rows, more than MLOPS_SELECTION_MAX_ROWS=%s: candidates "
            "are cross-validated and fitted on a seeded %ssample of %s rows, the winner is then "
            "refit on all %s",
            f"{selection.train_rows:,}",
            f"{params.selection_max_rows:,}",
            "stratified " if schema.task is Task.CLASSIFICATION else "",
            f"{len(selection.X):,}",
            f"{selection.train_rows:,}",
        )
    results = _train_candidates(schema, data, selection, params, progress)
    best = training.best_candidate(results, metric)
    logger.info("best candidate by CV %s: %s (%.4f)", metric, best.name, best.cv_score)
    if selection.sampled:
        progress.start("refitting %s on all %s training rows", best.name, f"{len(data.X_train):,}")
        best = refit_winner(best, data, params)
        results = [best if r.name == best.name else r for r in results]
        progress.done(
            "refit %s: holdout %s %s", best.name, metric, metricsmod.shown(best.metrics[metric])
        )
    progress.start("logging %d candidate runs and models to MLflow", len(results))
    run_id, uris, digest = log_candidates(results, dataset, schema, data, selection, params)
    progress.done("logged")
    progress.start("registering %s and applying the gate", best.name)
    gated = register_and_gate(best, uris[best.name], data, params, evaluation)
    decision = gated.decision
    progress.done(
        "v%s %s: %s", gated.version, "promoted" if decision.promote else "kept", decision.reason
    )
    return TrainResult(
        run_id=run_id,
        model_name=stack.settings.model_name,
        version=gated.version,
        candidate=best.name,
        metrics=best.metrics,
        promoted=decision.promote,
        reason=decision.reason,
        champion_before=gated.champion_before,
        champion_after=gated.champion_after,
        data_fingerprint=digest,
        task=str(schema.task),
        columns=schema.columns,
    )
