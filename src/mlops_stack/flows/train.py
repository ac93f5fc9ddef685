"""The train flow: validate -> split -> train candidates -> evaluate -> log -> register -> gate.

Each step is a Prefect task so a run shows in Prefect where it stopped and how long each step
took; the work itself lives in the data, training, modelstore and registry modules. One MLflow
parent run holds the dataset (fingerprint, source, size) and one child run per candidate with
its parameters, metrics and logged model; the best candidate is registered and handed to the
gate, which scores the champion on the very same holdout before deciding.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops_stack import data as datamod
from mlops_stack import modelstore, training
from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.gate import GateDecision, decide, resolve_metric
from mlops_stack.names import Task
from mlops_stack.registry import TASK_TAG, Registry, task_of_version, version_of
from mlops_stack.stack import current_stack


@dataclass(frozen=True)
class TrainResult:
    """What one train run produced, for the CLI and for flows that call this one."""

    run_id: str
    model_name: str
    version: str
    candidate: str
    metrics: dict[str, float]
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    data_fingerprint: str
    task: str = Task.CLASSIFICATION


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
    datamod.validate_dataset(
        dataset, min_rows=params.min_rows, min_class_rows=params.min_class_rows
    )
    return dataset, datamod.infer_schema(dataset, params.task)


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
def train_candidate(
    name: str, pipeline: Pipeline, data: training.Split, params: TrainParameters
) -> training.CandidateResult:
    """Cross-validate on the training split, refit on all of it, score on the holdout."""
    metric = params.gate.metric
    cv_score = training.cross_validate(
        pipeline,
        data.X_train,
        data.y_train,
        folds=params.cv_folds,
        seed=params.random_seed,
        metric=metric,
    )
    pipeline.fit(data.X_train, data.y_train)
    metrics = training.evaluate(pipeline, data.X_test, data.y_test)
    metrics |= training.single_row_latency(pipeline.predict, data.X_test, params.latency_samples)
    metrics[f"cv_{metric}"] = cv_score
    return training.CandidateResult(
        name=name,
        pipeline=pipeline,
        params=training.candidate_params(pipeline),
        cv_score=cv_score,
        metrics=metrics,
    )


@task(cache_policy=NO_CACHE)
def log_candidates(
    results: list[training.CandidateResult],
    dataset: datamod.Dataset,
    schema: datamod.DatasetSchema,
    data: training.Split,
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
            }
        )
        with modelstore.quiet_mlflow_hints():
            mlflow.log_input(
                mlflow.data.from_pandas(  # type: ignore[attr-defined]  # lazily exported
                    dataset.frame,
                    targets=dataset.target,
                    name="training-data",
                    source=None if dataset.builtin else dataset.source,
                ),
                context="training",
            )
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
                mlflow.log_params(result.params)
                mlflow.log_metrics(result.metrics)
                uris[result.name] = modelstore.log_pipeline(
                    result.pipeline,
                    data.X_train,
                    schema,
                    reference_rows=params.reference_sample_rows,
                    seed=params.random_seed,
                )
    return parent.info.run_id, uris, digest


def _score_champion(
    registry: Registry, X: pd.DataFrame, y: pd.Series, task: Task
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """Champion version and its metrics on the gate's data, or why it could not be scored.

    A champion of another task (a regressor against a new classifier) is not compared at all:
    its metrics are not the candidate's, and numeric class labels would even let it "score".
    """
    champion = registry.champion()
    if champion is None:
        return None, None, None
    number = version_of(champion)
    champion_task = task_of_version(champion)
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
    task = training.task_of(best.pipeline)
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


@flow(name="train")
def train_flow(params: TrainParameters | None = None) -> TrainResult:
    """Train candidates on a table, register the best and let the gate decide its alias.

    ``params`` None takes every option from the settings (``MLOPS_*``).
    """
    stack = current_stack()
    params = params or TrainParameters.from_settings(stack.settings)
    logger = get_run_logger()
    stack.registry.use_experiment(stack.settings.experiment_name)
    dataset, schema = load_and_validate(params)
    # "auto" becomes the task's metric; a metric of the other task stops here, named
    metric = resolve_metric(params.gate.metric, schema.task)
    gate = params.gate.model_copy(update={"metric": metric})
    params = params.model_copy(update={"gate": gate})
    logger.info("task: %s; gate metric: %s", schema.task, gate.metric)
    evaluation = (
        datamod.load_dataset(params.evaluation_path, params.target)
        if params.evaluation_path
        else None
    )
    data = split(dataset, schema, params)
    pipelines = training.build_candidates(schema, params.random_seed, params.candidates)
    results = [train_candidate(name, p, data, params) for name, p in pipelines.items()]
    best = training.best_candidate(results, params.gate.metric)
    logger.info("best candidate by CV %s: %s (%.4f)", params.gate.metric, best.name, best.cv_score)
    run_id, uris, digest = log_candidates(results, dataset, schema, data, params)
    gated = register_and_gate(best, uris[best.name], data, params, evaluation)
    decision = gated.decision
    logger.info(
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
    )
