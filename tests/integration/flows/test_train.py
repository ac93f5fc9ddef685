"""The train flow end to end on a real (embedded) MLflow and a real Prefect API."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_stack import modelstore
from mlops_stack.data import DataValidationError, infer_schema, load_dataset
from mlops_stack.flows.parameters import TrainParameters
from mlops_stack.flows.train import train_flow
from mlops_stack.names import Alias
from mlops_stack.registry import Registry, RegistryError, version_of
from mlops_stack.stack import current_stack
from mlops_stack.training import build_candidates, split_data
from tests.support.tables import mixed_table, xor_table


def _registry() -> Registry:
    return current_stack().registry


def _params(**overrides: object) -> TrainParameters:
    """The train options of the current settings, with ``overrides`` (what `mlops train` does)."""
    return TrainParameters.from_settings(current_stack().settings, **overrides)


def _aliases(settings) -> dict[str, str]:
    return {
        str(alias): version_of(mv)
        for alias in (Alias.CHAMPION, Alias.CHALLENGER)
        if (mv := _registry().by_alias(alias))
    }


def _in_memory_twin(settings, dataset, candidate: str):
    """Refit, outside MLflow, the pipeline the flow registered: same seed, split and candidate."""
    schema = infer_schema(dataset)
    split = split_data(
        dataset.features, dataset.labels, test_size=settings.test_size, seed=settings.random_seed
    )
    pipeline = build_candidates(schema, settings.random_seed, [candidate])[candidate]
    return pipeline.fit(split.X_train, split.y_train), split


def test_default_data_trains_registers_and_promotes_a_champion(stack):
    settings = stack()
    result = train_flow()
    assert result.version == "1" and result.promoted
    assert _aliases(settings) == {"champion": "1"}
    for name in (
        "accuracy",
        "f1",
        "roc_auc",
        "precision",
        "recall",
        "latency_p50_ms",
        "latency_p95_ms",
    ):
        assert name in result.metrics
    assert result.metrics["roc_auc"] > 0.95

    client = _registry().client
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    run = client.get_run(champion.run_id)
    assert run.data.tags["data.fingerprint"] == result.data_fingerprint
    parent = client.get_run(result.run_id).data
    assert parent.tags["mlops.selection"] == "all rows"  # 455 training rows: no sampling
    assert parent.params["selection.rows"] == parent.params["selection.train_rows"] == "455"
    assert run.data.params["n_estimators" if "forest" in result.candidate else "random_state"]
    assert champion.tags["gate.decision"] == "promoted"
    # three candidate runs under one parent, each with its own metrics
    candidates = client.search_runs([run.info.experiment_id], "tags.`mlops.role` = 'candidate'")
    assert sorted(r.data.tags["mlops.candidate"] for r in candidates) == [
        "hist_gradient_boosting",
        "linear",
        "random_forest",
    ]
    assert all(r.data.tags["mlflow.parentRunId"] == result.run_id for r in candidates)

    # the logged model carries a signature of the 30 raw features and the reference sample
    info = mlflow.models.get_model_info(f"models:/{settings.model_name}@champion")
    assert len(info.signature.inputs.inputs) == 30
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            f"runs:/{champion.run_id}/{modelstore.REFERENCE_ARTIFACT}"
        )
    )
    assert reference.shape == (455, 30)
    assert modelstore.load_schema(champion.run_id).feature_names == list(reference.columns)
    # and the holdout's features (the test split: 114 rows), which the predictor verifies against
    holdout = modelstore.load_holdout(champion.run_id)
    assert holdout is not None and list(holdout.columns) == list(reference.columns)
    assert len(holdout) == 114 and not holdout.merge(reference).shape[0]  # none trained on


def test_second_train_on_same_data_ties_and_keeps_the_champion(stack):
    settings = stack(candidates="logistic_regression")
    first, second = train_flow(), train_flow()
    assert first.promoted and not second.promoted
    assert second.reason.startswith("tie")
    assert _aliases(settings) == {"champion": "1", "challenger": "2"}
    version = _registry().version("2")
    assert version.tags["gate.decision"] == "kept-as-challenger"
    assert version.tags["gate.compared_with"] == "v1"


def test_logged_model_answers_raw_rows_exactly_as_the_in_memory_pipeline(stack, tmp_path):
    settings = stack()
    path = tmp_path / "customers.csv"
    mixed_table().to_csv(path, index=False)
    result = train_flow(_params(data_path=str(path), target="churn"))
    assert result.promoted

    dataset = load_dataset(path, "churn")
    twin, split = _in_memory_twin(settings, dataset, result.candidate)
    raw = split.X_test  # strings for categories, NaN where values are missing
    assert raw.isna().any().any()
    uri = f"models:/{settings.model_name}@champion"
    logged = mlflow.sklearn.load_model(uri)
    np.testing.assert_array_equal(logged.predict_proba(raw), twin.predict_proba(raw))
    served = mlflow.pyfunc.load_model(uri).predict(raw)
    np.testing.assert_array_equal(np.asarray(served), twin.predict(raw))
    # an unseen category is answered, not an error (one-hot ignores it)
    unseen = raw.head(1).assign(city="marseille")
    assert mlflow.pyfunc.load_model(uri).predict(unseen)[0] in {"yes", "no"}

    info = mlflow.models.get_model_info(uri)
    required = {c.name: c.required for c in info.signature.inputs.inputs}
    assert required == {"age": True, "income": False, "city": False, "plan": True}


def test_gate_decisions_through_the_flow_and_rollback(stack, tmp_path):
    """XOR labels: a linear model cannot learn them, trees can. Floors at 0 to reach the
    comparison. v1 linear (first), v2 trees (better), v3 linear (worse), v4 trees (tie)."""
    path = tmp_path / "xor.csv"
    xor_table().to_csv(path, index=False)
    floors = {"gate_min_accuracy": 0, "gate_min_f1": 0, "gate_min_roc_auc": 0}
    linear = {"candidates": "logistic_regression", **floors}
    trees = {"candidates": "random_forest,hist_gradient_boosting", **floors}

    def train(env):
        stack(**env)
        return train_flow(_params(data_path=str(path), target="label"))

    v1, v2, v3, v4 = train(linear), train(trees), train(linear), train(trees)
    assert v1.promoted and v1.reason.startswith("first model")
    assert v2.promoted and v2.reason.startswith("better")
    assert v2.metrics["roc_auc"] > 0.9 > 0.7 > v1.metrics["roc_auc"]
    assert not v3.promoted and v3.reason.startswith("worse")
    assert not v4.promoted and v4.reason.startswith("tie")
    settings = stack()
    assert _aliases(settings) == {"champion": "2", "challenger": "4"}

    done = _registry().rollback()
    assert (done.from_version, done.to_version) == ("2", "1")
    assert _aliases(settings)["champion"] == "1"
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        _registry().rollback()


def test_default_floors_refuse_a_weak_first_model(stack, tmp_path):
    path = tmp_path / "xor.csv"
    xor_table().to_csv(path, index=False)
    settings = stack(candidates="logistic_regression")
    result = train_flow(_params(data_path=str(path), target="label"))
    assert not result.promoted and "outside the absolute bounds" in result.reason
    assert _aliases(settings) == {"challenger": "1"}


def test_champion_trained_on_other_columns_is_not_replaced_automatically(stack, tmp_path):
    settings = stack(candidates="logistic_regression")
    train_flow()
    path = tmp_path / "customers.csv"
    mixed_table().to_csv(path, index=False)
    result = train_flow(_params(data_path=str(path), target="churn"))
    assert not result.promoted and "cannot be scored" in result.reason
    assert _aliases(settings) == {"champion": "1", "challenger": "2"}


def test_invalid_data_stops_the_flow_before_training(stack, tmp_path):
    stack()
    frame = mixed_table()
    frame.loc[:3, "churn"] = None  # a constant column would be dropped, not refused
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="column 'churn': target has 4 missing"):
        train_flow(_params(data_path=str(path), target="churn"))
    assert _registry().versions() == []


def test_a_large_split_is_sampled_for_selection_and_only_the_winner_refit_on_all_rows(
    stack, tmp_path, caplog
):
    """800 training rows, MLOPS_SELECTION_MAX_ROWS=200: both candidates are cross-validated and
    fitted on 200 sampled rows; the winner (a forest, on XOR labels) is refit on all 800."""
    path = tmp_path / "xor.csv"
    xor_table(rows=1000).to_csv(path, index=False)
    floors = {"gate_min_accuracy": 0, "gate_min_f1": 0, "gate_min_roc_auc": 0}
    settings = stack(candidates="linear,random_forest", selection_max_rows="200", **floors)
    result = train_flow(_params(data_path=str(path), target="label"))
    assert result.candidate == "random_forest" and result.promoted

    client = _registry().client
    parent = client.get_run(result.run_id).data
    assert parent.tags["mlops.selection"] == "sampled"
    assert parent.params["selection.rows"] == "200"
    assert parent.params["selection.train_rows"] == "800"
    runs = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id], "tags.`mlops.role` = 'candidate'"
    )
    logged = {r.data.tags["mlops.candidate"]: r for r in runs}
    assert logged["random_forest"].data.params["fit_rows"] == "800"
    assert logged["linear"].data.params["fit_rows"] == "200"
    assert {r.data.params["selection_rows"] for r in runs} == {"200"}
    assert logged["random_forest"].data.params["max_samples"] == "200"

    # the champion's trees drew 200 rows each, and together every one of the 800
    forest = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")["model"]
    assert {len(rows) for rows in forest.estimators_samples_} == {200}
    assert len(set().union(*map(set, forest.estimators_samples_))) == 800
    assert forest.n_jobs == 1  # served single-threaded, whatever it was fitted with
    # the loser was fitted on the sample only: its scaler saw 200 rows
    linear = mlflow.sklearn.load_model(f"runs:/{logged['linear'].info.run_id}/model")
    assert linear["preprocess"].named_transformers_["numeric"]["scale"].n_samples_seen_ == 200
    assert "more than MLOPS_SELECTION_MAX_ROWS=200" in caplog.text
    assert "refitting random_forest on all 800 training rows" in caplog.text
