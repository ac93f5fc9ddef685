"""A messy table trained end to end: each column's treatment is recorded with the model and
applied inside it (the unit tests of the decisions are tests/unit/data/test_columns.py)."""

from __future__ import annotations

import time

import numpy as np

from mlops_stack.data import (
    load_dataset,
)
from tests.unit.data.test_columns import MESSY_ACTIONS, messy_table


def test_messy_table_trains_in_under_a_minute_and_reports_each_column(stack, tmp_path):
    import mlflow

    from mlops_stack import modelstore
    from mlops_stack.flows.parameters import TrainParameters
    from mlops_stack.flows.train import train_flow
    from mlops_stack.stack import current_stack

    settings = stack()
    path = tmp_path / "messy.csv"
    frame = messy_table()
    frame.to_csv(path, index=False)
    params = TrainParameters.from_settings(settings, data_path=str(path), target="churn")
    assert params.candidates == ["linear", "random_forest", "hist_gradient_boosting"]

    # a new embedded store creates its MLflow database first: a cost of the stack, not the table
    current_stack().registry.use_experiment(settings.experiment_name)
    started, cpu = time.perf_counter(), time.process_time()
    result = train_flow(params)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # the CPU figure tells a slow run on a busy machine from a slow flow
    assert elapsed < 60, f"training the messy table took {elapsed:.1f} s ({cpu:.1f} s of CPU)"

    assert {c.name: c.action for c in result.columns} == MESSY_ACTIONS
    version = current_stack().registry.version(result.version)
    logged = modelstore.load_schema(version.run_id)
    assert {c.name: c.action for c in logged.columns} == MESSY_ACTIONS
    assert logged.feature_names == ["is_member", "zip", "age", "income", "amount", "plan"]
    reasons = {c.name: c.reason for c in logged.columns}
    assert reasons["amount"].startswith("mostly numbers: 40 value(s)")
    assert reasons["zip"].startswith("2000 distinct values") or reasons["zip"].startswith("19")

    # dropped columns are optional inputs: a full row and a row of the used features both work
    uri = f"models:/{settings.model_name}/{result.version}"
    info = mlflow.models.get_model_info(uri)
    required = {c.name: c.required for c in info.signature.inputs.inputs}
    assert not any(required[name] for name, action in MESSY_ACTIONS.items() if action == "dropped")
    assert required["age"] and required["zip"]
    model = mlflow.pyfunc.load_model(uri)
    rows = load_dataset(path, "churn").features.head(20)
    full = np.asarray(model.predict(rows))
    assert set(full) <= {"yes", "no"}
    np.testing.assert_array_equal(np.asarray(model.predict(rows[logged.feature_names])), full)
