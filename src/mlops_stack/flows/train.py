"""The train flow: validate -> split -> train candidates -> evaluate -> log -> register -> gate.

Each step is a Prefect task so a run shows in Prefect where it stopped and how long each step
took; the work itself lives in the data, training, modelstore and registry modules. One MLflow
parent run holds the dataset (fingerprint, source, size) and one child run per candidate with
its parameters, metrics and logged model; the best candidate is registered and handed to the
gate, which scores the champion on the very same holdout before deciding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlops_stack import data as datamod
from mlops_stack import modelstore, registry, training
from mlops_stack.gate import GateDecision, decide
from mlops_stack.notices import publish_model_change
from mlops_stack.settings import Settings, get_settings


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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@task(cache_policy=NO_CACHE)
def load_and_validate(
    data_path: str | None, target: str, settings: Settings
) -> tuple[datamod.Dataset, datamod.DatasetSchema]:
    """Load the table and refuse it with every problem named before any training starts."""
    dataset = datamod.load_dataset(data_path, target)
    datamod.validate_dataset(
        dataset, min_rows=settings.min_rows, min_class_rows=settings.min_class_rows
    )
    return dataset, datamod.infer_schema(dataset)


@task(cache_policy=NO_CACHE)
def split(dataset: datamod.Dataset, settings: Settings) -> training.Split:
    return training.split_data(
        dataset.features, dataset.labels, test_size=settings.test_size, seed=settings.random_seed
    )


@task(cache_policy=NO_CACHE)
def train_candidate(
    name: str, pipeline, data: training.Split, settings: Settings
) -> training.CandidateResult:
    """Cross-validate on the training split, refit on all of it, score on the holdout."""
    cv_score = training.cross_validate(
        pipeline,
        data,
        folds=settings.cv_folds,
        seed=settings.random_seed,
        metric=settings.gate_metric,
    )
    pipeline.fit(data.X_train, data.y_train)
    metrics = training.evaluate(pipeline, data.X_test, data.y_test)
    metrics |= training.single_row_latency(pipeline.predict, data.X_test, settings.latency_samples)
    metrics[f"cv_{settings.gate_metric}"] = cv_score
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
    settings: Settings,
    trigger: str = "manual",
) -> tuple[str, dict[str, str], str]:
    """Log a parent run and one child run (params, metrics, model) per candidate.

    Returns the parent run id, candidate name -> model URI, and the data fingerprint.
    """
    digest = datamod.fingerprint(dataset.frame)
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags(
            {
                "mlops.role": "train",
                "mlops.trigger": trigger,
                "data.fingerprint": digest,
                "data.source": dataset.source,
            }
        )
        mlflow.log_params(
            {
                "data.rows": len(dataset.frame),
                "data.target": dataset.target,
                "data.features": len(schema.features),
                "test_size": settings.test_size,
                "seed": settings.random_seed,
                "cv_folds": settings.cv_folds,
            }
        )
        with modelstore.quiet_mlflow_hints():
            mlflow.log_input(
                mlflow.data.from_pandas(
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
                        "data.fingerprint": digest,
                    }
                )
                mlflow.log_params(result.params)
                mlflow.log_metrics(result.metrics)
                uris[result.name] = modelstore.log_pipeline(
                    result.pipeline,
                    data.X_train,
                    schema,
                    reference_rows=settings.reference_sample_rows,
                    seed=settings.random_seed,
                )
    return parent.info.run_id, uris, digest


def _score_champion(
    client: MlflowClient, settings: Settings, X: pd.DataFrame, y: pd.Series
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """Champion version and its metrics on the gate's data, or why it could not be scored."""
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if champion is None:
        return None, None, None
    number = registry.version_of(champion)
    try:
        model = modelstore.load_pipeline(f"models:/{settings.model_name}/{number}")
        return number, training.evaluate(model, X, y), None
    except Exception as exc:  # a champion trained on other columns or classes cannot score
        return number, None, f"{type(exc).__name__}: {exc}"


@task(cache_policy=NO_CACHE)
def register_and_gate(
    best: training.CandidateResult,
    model_uri: str,
    data: training.Split,
    settings: Settings,
    evaluation: datamod.Dataset | None = None,
) -> tuple[str, GateDecision, str | None, str | None]:
    """Register the best candidate, score it and the champion on the same data, apply the gate.

    The data is the holdout, or ``evaluation`` when given: a retrain passes freshly labelled
    rows the candidate did not train on, because that is where the champion is in question.
    """
    X, y = (
        (data.X_test, data.y_test)
        if evaluation is None
        else (evaluation.features, evaluation.labels)
    )
    candidate = best.metrics if evaluation is None else training.evaluate(best.pipeline, X, y)
    client = registry.client_for(settings)
    champion_version, champion_metrics, error = _score_champion(client, settings, X, y)
    version = str(mlflow.register_model(model_uri, settings.model_name).version)
    decision = decide(
        candidate,
        champion_metrics,
        metric=settings.gate_metric,
        floors=settings.gate_thresholds,
        min_improvement=settings.gate_min_improvement,
        champion_version=champion_version,
        champion_error=error,
    )
    evaluated_on = datamod.fingerprint(pd.concat([X, y], axis=1))
    registry.record_decision(client, settings.model_name, version, decision, evaluated_on)
    if decision.promote:
        registry.make_champion(client, settings.model_name, version)
        publish_model_change(settings, version)
    else:
        registry.make_challenger(client, settings.model_name, version)
    after = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    return version, decision, champion_version, registry.version_of(after) if after else None


@flow(name="train")
def train_flow(
    data_path: str | None = None,
    target: str | None = None,
    evaluation_path: str | None = None,
    trigger: str = "manual",
) -> dict[str, object]:
    """Train candidates on a table, register the best and let the gate decide its alias.

    ``data_path`` None trains on ``MLOPS_DATASET_PATH`` or, if unset, the built-in table.
    ``evaluation_path`` names labelled rows, kept out of training, on which the gate compares
    the candidate with the champion instead of the holdout (the retrain flow's fresh rows).
    """
    settings = get_settings()
    logger = get_run_logger()
    registry.configure_tracking(settings)
    path = data_path or (str(settings.dataset_path) if settings.dataset_path else None)
    label = target or settings.target_column
    dataset, schema = load_and_validate(path, label, settings)
    evaluation = datamod.load_dataset(evaluation_path, label) if evaluation_path else None
    data = split(dataset, settings)
    pipelines = training.build_candidates(schema, settings.random_seed, settings.candidate_names)
    results = [train_candidate(name, p, data, settings) for name, p in pipelines.items()]
    best = max(results, key=lambda r: r.cv_score)  # first listed wins a tie: deterministic
    logger.info(
        "best candidate by CV %s: %s (%.4f)", settings.gate_metric, best.name, best.cv_score
    )
    run_id, uris, digest = log_candidates(results, dataset, schema, data, settings, trigger)
    version, decision, before, after = register_and_gate(
        best, uris[best.name], data, settings, evaluation
    )
    logger.info("v%s %s: %s", version, "promoted" if decision.promote else "kept", decision.reason)
    return TrainResult(
        run_id=run_id,
        model_name=settings.model_name,
        version=version,
        candidate=best.name,
        metrics=best.metrics,
        promoted=decision.promote,
        reason=decision.reason,
        champion_before=before,
        champion_after=after,
        data_fingerprint=digest,
    ).to_dict()
