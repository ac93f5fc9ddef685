"""Logged traffic for monitoring tests: the champion's real predictions on chosen rows."""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow

from mlops_stack.data import load_dataset
from mlops_stack.monitoring_db.records import PredictionRecord
from tests.support.monitoring import Monitoring

# ten size and texture features of the built-in table (the old demo's shift; the benchmark
# benchmarks/monitor.py shifts the same ones)
SHIFTED = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
]


class Traffic:
    """Logs predictions of the champion the way the predictor does, row by row."""

    def __init__(self, settings):
        self.settings = settings
        self.store = Monitoring(settings.resolved_monitoring_db_url)
        self.store.migrate()
        self.model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
        dataset = load_dataset(None, "target")
        self.features, self.labels = dataset.features, dataset.labels
        self.sent = 0

    def send(
        self,
        rows: int,
        seed: int,
        shift: float = 0.0,
        wrong_labels: bool = False,
        true_labels: bool = False,
    ) -> None:
        """Log ``rows`` predictions; with ``true_labels`` (or ``wrong_labels``) their feedback."""
        picked = self.features.sample(n=rows, replace=True, random_state=seed)
        labels = self.labels.loc[picked.index]
        if shift:
            spread = self.features[SHIFTED].std()
            picked = picked.assign(**{c: picked[c] + shift * spread[c] for c in SHIFTED})
        proba = self.model.predict_proba(picked)
        predicted = self.model.classes_[proba.argmax(axis=1)]
        records = []
        for i, values in enumerate(picked.to_dict("records")):
            request_id = f"r{self.sent + i}"
            records.append(
                PredictionRecord(
                    request_id=request_id,
                    row=0,
                    created_at=datetime.now(UTC),
                    model_name=self.settings.model_name,
                    model_version="1",
                    features=values,
                    prediction=int(predicted[i]),
                    probabilities={"0": float(proba[i, 0]), "1": float(proba[i, 1])},
                    latency_ms=1.0,
                )
            )
        self.store.predictions.write_predictions(records)
        if wrong_labels or true_labels:
            self.store.predictions.record_feedback(
                [
                    (r.request_id, 0, str(1 - int(label) if wrong_labels else int(label)))
                    for r, label in zip(records, labels, strict=True)
                ]
            )
        self.sent += rows
