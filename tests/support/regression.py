"""A regression champion and its logged traffic, for the monitor and retrain flow tests.

The champion is a real scikit-learn Ridge behind the stack's own preprocessing, logged with
``modelstore.log_pipeline`` (schema, reference sample, signature) and made champion through the
stack's Registry, as training does. It is fitted on the whole diabetes table and its logged
figures are measured on it: traffic that replays the table with its true labels then scores
exactly the baseline, so "clean" is clean by construction, not by luck of a sample.
"""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

from mlops_stack import modelstore
from mlops_stack.data import BUILTIN_REGRESSION_DATASET, infer_schema, load_dataset
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.names import Task
from mlops_stack.preprocessing import build_preprocessor
from mlops_stack.stack import current_stack
from tests.support.monitoring import Monitoring

# features the drift tests shift: the two the Ridge leans on most (its output moves with them)
SHIFTED = ["bmi", "s5"]


def register_regression_champion() -> dict[str, float]:
    """Fit, log, register and alias a Ridge on the diabetes table; its logged metrics."""
    stack = current_stack()
    dataset = load_dataset(BUILTIN_REGRESSION_DATASET, "target")
    schema = infer_schema(dataset, Task.REGRESSION)
    pipeline = Pipeline(
        [("preprocess", build_preprocessor(schema, scale=True)), ("model", Ridge(alpha=1.0))]
    )
    pipeline.fit(dataset.features, dataset.labels)
    predicted = pipeline.predict(dataset.features)
    metrics = {
        "rmse": float(root_mean_squared_error(dataset.labels, predicted)),
        "mae": float(mean_absolute_error(dataset.labels, predicted)),
        "r2": float(r2_score(dataset.labels, predicted)),
    }
    stack.registry.use_experiment(stack.settings.experiment_name)
    with mlflow.start_run(run_name="ridge"):
        mlflow.set_tags({"mlops.role": "candidate", "mlops.candidate": "ridge"})
        mlflow.log_metrics(metrics)
        uri = modelstore.log_pipeline(
            pipeline, dataset.features, schema, reference_rows=len(dataset.features), seed=0
        )
    version = stack.registry.register(uri)
    stack.registry.make_champion(version)
    return metrics


class RegressionTraffic:
    """Logs the champion's predictions on diabetes rows as the predictor does: JSON numbers,
    and labels through feedback as text."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.store = Monitoring(settings.resolved_monitoring_db_url)
        self.store.migrate()
        self.model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
        # the table the champion was trained on, read the same way: a CSV's floats parse a
        # hair off the built-in table's, and a column of few values is tested by its values
        dataset = load_dataset(settings.dataset_path or BUILTIN_REGRESSION_DATASET, "target")
        self.features, self.labels = dataset.features, dataset.labels
        self.sent = 0

    def send(
        self,
        *,
        shift: float = 0.0,
        labelled: bool = True,
        error_scale: float = 1.0,
        label_offset: float = 0.0,
    ) -> pd.DataFrame:
        """Log every row of the table once, in order, and (``labelled``) their labels.

        ``shift`` moves the SHIFTED features by that many standard deviations. Each row is
        labelled ``prediction - error_scale * (prediction - true value) + label_offset``: the
        true labels by default; ``error_scale`` makes the model's errors that many times what
        they are, ``label_offset`` moves what the target means (a concept shift). Returns the
        logged rows with their prediction and label.
        """
        rows = self.features
        truth = self.labels.loc[rows.index].to_numpy(dtype=float)
        if shift:
            spread = self.features[SHIFTED].std()
            rows = rows.assign(**{c: rows[c] + shift * spread[c] for c in SHIFTED})
        predicted = self.model.predict(rows)
        labels = predicted - error_scale * (predicted - truth) + label_offset if labelled else None
        records = [
            PredictionRecord(
                request_id=f"d{self.sent + i}",
                row=0,
                created_at=datetime.now(UTC),
                model_name=self.settings.model_name,
                model_version="1",
                features=values,
                prediction=float(predicted[i]),
                probabilities=None,
                latency_ms=1.0,
            )
            for i, values in enumerate(rows.to_dict("records"))
        ]
        self.store.predictions.write_predictions(records)
        if labels is not None:
            self.store.predictions.record_feedback(
                [(r.request_id, 0, repr(float(y))) for r, y in zip(records, labels, strict=True)]
            )
        self.sent += len(records)
        return rows.assign(prediction=predicted, label=labels if labels is not None else np.nan)
