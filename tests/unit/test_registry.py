"""What a registered version predicts (``registry.task_of``): one order for every reader.

The tag, else the run's logged schema, else the loaded estimator, else classification. The
runs live in an embedded MLflow store; the versions are built by hand, so each step of the
order is tested on its own.
"""

from __future__ import annotations

import mlflow
import pytest
from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_tag import ModelVersionTag
from sklearn.linear_model import LogisticRegression, Ridge

from mlops_stack import registry
from mlops_stack.data import DatasetSchema
from mlops_stack.modelstore import SCHEMA_ARTIFACT
from mlops_stack.names import Task
from mlops_stack.registry import TASK_TAG, logged_task, task_of


@pytest.fixture
def runs(stack):
    """Run ids in an embedded store: one that logged a regression schema, one that logged none."""
    registry.use_tracking(stack())
    mlflow.set_experiment("versions")  # in this test's store, whatever an earlier test made active
    logged_task.cache_clear()
    with mlflow.start_run() as with_schema:
        schema = DatasetSchema(target="y", task=Task.REGRESSION, features=[])
        mlflow.log_dict(schema.model_dump(mode="json"), SCHEMA_ARTIFACT)
    with mlflow.start_run() as bare:
        mlflow.log_metric("accuracy", 0.9)
    yield {"schema": with_schema.info.run_id, "bare": bare.info.run_id}
    logged_task.cache_clear()


def version(run_id: str | None, task_tag: str | None = None) -> ModelVersion:
    tags = [ModelVersionTag(TASK_TAG, task_tag)] if task_tag else None
    return ModelVersion("m", "1", 0, run_id=run_id, tags=tags)


def test_the_tag_wins_over_everything(runs):
    tagged = version(runs["schema"], "classification")
    assert task_of(tagged, estimator=Ridge()) is Task.CLASSIFICATION


def test_without_a_tag_the_runs_schema_says(runs):
    assert task_of(version(runs["schema"]), estimator=LogisticRegression()) is Task.REGRESSION


def test_a_schema_the_caller_read_is_not_read_again(runs):
    read = DatasetSchema(target="y", task=Task.CLASSIFICATION, features=[])
    assert task_of(version(runs["schema"]), schema=read) is Task.CLASSIFICATION


def test_without_a_schema_the_estimator_says(runs):
    assert task_of(version(runs["bare"]), estimator=Ridge()) is Task.REGRESSION
    assert task_of(version(None), estimator=Ridge()) is Task.REGRESSION


def test_with_nothing_to_go_by_a_version_is_a_classifier(runs):
    assert task_of(version(runs["bare"])) is Task.CLASSIFICATION
    assert task_of(version(None)) is Task.CLASSIFICATION


def test_schema_reads_are_cached_per_run(runs):
    assert logged_task(runs["schema"]) is Task.REGRESSION
    assert logged_task(runs["bare"]) is None  # no schema: a fact that does not change either
    assert logged_task.cache_info().currsize == 2
    logged_task(runs["schema"])
    assert logged_task.cache_info().hits == 1
