"""The predictor on models of every task: regression, multiclass with class names, old models.

Each model is a real scikit-learn Pipeline trained here on a table written to a file, logged with
``modelstore.log_pipeline`` (signature, schema, reference sample) into an embedded MLflow and
registered as champion through the stack's ``Registry``; the predictor loads it from there.
"""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from mlops_stack import modelstore
from mlops_stack.data import MAX_STORED_CATEGORIES, DatasetSchema, infer_schema, load_dataset
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.names import Task
from mlops_stack.preprocessing import build_preprocessor
from mlops_stack.serving.app import create_app
from mlops_stack.serving.model import category_checks
from mlops_stack.serving.schema import FeatureField
from mlops_stack.settings import Settings, get_settings
from mlops_stack.stack import Stack

from .servers import wait_for

CLINICS = ["east", "north", "south"]
WINES = {0: "barolo", 1: "grignolino", 2: "barbera"}


def _diabetes_with_clinic(rows_missing_clinic: int = 12) -> pd.DataFrame:
    """scikit-learn's diabetes table plus a categorical column that moves the target."""
    rng = np.random.default_rng(7)
    frame = load_diabetes(as_frame=True).frame
    clinic = rng.choice(CLINICS, len(frame))
    frame.insert(0, "clinic", clinic)
    frame["target"] = frame["target"] + np.where(clinic == "north", 40.0, 0.0)
    frame.loc[rng.choice(len(frame), rows_missing_clinic, replace=False), "clinic"] = None
    return frame


def _wine_with_names() -> pd.DataFrame:
    """scikit-learn's wine table (3 cultivars, 13 numeric features), labels as names."""
    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map(WINES)
    return frame


def _register(settings: Settings, path, target: str, task: str | None, estimator) -> DatasetSchema:
    """Train a Pipeline on the file at ``path``, log it as training does, make it champion."""
    dataset = load_dataset(path, target)
    schema = infer_schema(dataset, task)
    features = dataset.features[schema.feature_names]
    pipeline = Pipeline(
        [("preprocess", build_preprocessor(schema, scale=True)), ("model", estimator)]
    )
    pipeline.fit(features, dataset.labels)
    registry = Stack(settings).registry
    registry.use_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=f"test-{settings.model_name}"):
        uri = modelstore.log_pipeline(pipeline, features, schema, reference_rows=50, seed=0)
    registry.make_champion(registry.register(uri))
    return schema


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Settings per model name: a regressor on diabetes and a classifier on named wines."""
    root = tmp_path_factory.mktemp("serving-tasks")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLOPS_DATA_DIR": str(root / "mlops-data"),
            "MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.05",
            "MLOPS_RELOAD_POLL_SECONDS": "30",
        }.items():
            mp.setenv(key, value)
        mp.delenv("MLOPS_REDIS_URL", raising=False)
        get_settings.cache_clear()
        base = get_settings()
        diabetes, wine = root / "diabetes.csv", root / "wine.csv"
        _diabetes_with_clinic().to_csv(diabetes, index=False)
        _wine_with_names().to_csv(wine, index=False)
        regression = base.model_copy(update={"model_name": "diabetes-regressor"})
        multiclass = base.model_copy(update={"model_name": "wine-classifier"})
        _register(regression, diabetes, "target", "regression", Ridge(alpha=1.0))
        _register(multiclass, wine, "target", None, LogisticRegression(max_iter=2000))
        yield {
            "regression": regression,
            "multiclass": multiclass,
            "diabetes": pd.read_csv(diabetes).drop(columns=["target"]),
            "wine": pd.read_csv(wine).drop(columns=["target"]),
        }
    get_settings.cache_clear()


@pytest.fixture
def regressor(models):
    with TestClient(create_app(Stack(models["regression"]))) as client:
        yield client


@pytest.fixture
def wine_client(models):
    with TestClient(create_app(Stack(models["multiclass"]))) as client:
        yield client


def _json_row(row: pd.Series) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


# --- regression ------------------------------------------------------------------------------


def test_regression_answers_the_logged_models_number_without_probabilities(models, regressor):
    settings, features = models["regression"], models["diabetes"]
    rows = features[features["clinic"].notna()].head(12)
    logged = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    expected = logged.predict(rows)
    assert np.ptp(expected) > 50  # a real regressor: the answers differ by row
    body = {"rows": [_json_row(r) for _, r in rows.iterrows()]}
    batch = regressor.post("/predict/batch", json=body)
    assert batch.status_code == 200, batch.text
    for i, (_, row) in enumerate(rows.iterrows()):
        single = regressor.post("/predict", json={"features": _json_row(row)})
        assert single.status_code == 200, single.text
        for answer in (single.json(), batch.json()["predictions"][i]):
            assert isinstance(answer["prediction"], float)
            assert answer["prediction"] == pytest.approx(expected[i], abs=1e-9)
            assert answer["probabilities"] is None
            assert answer["warnings"] == []


def test_model_info_shows_the_task(regressor, wine_client):
    regression = regressor.get("/model").json()
    assert regression["task"] == "regression" and regression["classes"] == []
    multiclass = wine_client.get("/model").json()
    assert multiclass["task"] == "classification"
    assert multiclass["classes"] == ["barbera", "barolo", "grignolino"]
    schemas = regressor.get("/openapi.json").json()["components"]["schemas"]
    assert "task" in schemas["ModelInfo"]["properties"]
    for answer in ("PredictResponse", "RowPrediction"):
        assert "never seen in training" in schemas[answer]["properties"]["warnings"]["description"]
        assert "warnings" in schemas[answer]["required"]


def test_regression_feedback_takes_numbers_and_numeric_text(models, regressor):
    settings, features = models["regression"], models["diabetes"]
    row = _json_row(features[features["clinic"].notna()].iloc[0])
    first = regressor.post("/predict", json={"features": row}).json()["request_id"]
    batch = regressor.post("/predict/batch", json={"rows": [row, row]}).json()["request_id"]
    number = regressor.post("/feedback", json={"request_id": first, "label": 151.5})
    assert number.status_code == 200 and number.json() == {"accepted": 1, "unknown": []}
    text = regressor.post(
        "/feedback",
        json={
            "items": [
                {"request_id": batch, "row": 0, "label": "151.5"},
                {"request_id": batch, "row": 1, "label": 97},
            ]
        },
    )
    assert text.status_code == 200 and text.json()["accepted"] == 2

    store = MonitoringDB(settings.resolved_monitoring_db_url)
    try:
        keys = [(first, 0), (batch, 0), (batch, 1)]

        def labelled_rows() -> tuple[pd.DataFrame] | None:
            frame = store.predictions_with_feedback(labelled_only=True)
            logged = set(zip(frame["request_id"], frame["row"], strict=True))
            return (frame,) if logged >= set(keys) else None  # a frame has no truth value

        [labelled] = wait_for(labelled_rows, 30, "the three labelled predictions")
        labels = {(r.request_id, r.row): r.label for r in labelled.itertuples()}
        ours = [labels[key] for key in keys]
        assert ours == ["151.5", "151.5", "97.0"]  # text, as every label is stored
        assert pd.to_numeric(pd.Series(ours)).tolist() == [151.5, 151.5, 97.0]
        logged = labelled.set_index(["request_id", "row"])["prediction"]
        assert isinstance(logged[(first, 0)], float)  # stored as a JSON number
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("abc", "label must be a number for a regression model; got 'abc'"),
        (True, "label must be a number for a regression model; got True"),
        ("NaN", "label must be a finite number for a regression model; got 'NaN'"),
        ("", "label must be a number for a regression model; got ''"),
    ],
)
def test_regression_feedback_refuses_a_non_number_with_422(models, regressor, label, reason):
    row = _json_row(models["diabetes"].dropna().iloc[0])
    request_id = regressor.post("/predict", json={"features": row}).json()["request_id"]
    response = regressor.post("/feedback", json={"request_id": request_id, "label": label})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "label"], "msg": reason, "type": "value_error"}
    ]


def test_a_bad_label_in_a_batch_is_named_by_position_and_nothing_is_stored(models, regressor):
    settings = models["regression"]
    row = _json_row(models["diabetes"].dropna().iloc[0])
    request_id = regressor.post("/predict/batch", json={"rows": [row, row]}).json()["request_id"]
    items = [
        {"request_id": request_id, "row": 0, "label": 120},
        {"request_id": request_id, "row": 1, "label": "a lot"},
    ]
    response = regressor.post("/feedback", json={"items": items})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "items", 1, "label"]
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    try:
        labelled = store.predictions_with_feedback(labelled_only=True)
        assert request_id not in set(labelled["request_id"])
    finally:
        store.dispose()


def test_regression_metrics_count_rows_without_a_series_per_value(models, regressor):
    rows = [_json_row(r) for _, r in models["diabetes"].dropna().head(5).iterrows()]
    before = regressor.get("/metrics").text
    assert regressor.post("/predict/batch", json={"rows": rows}).status_code == 200
    after = regressor.get("/metrics").text
    labels = {"model_version": "1", "prediction": "number"}
    count = "mlops_predictions_total"
    assert _metric(after, count, **labels) - _metric(before, count, **labels) == 5
    assert (
        _metric(after, "mlops_predicted_values_count", model_version="1")
        - _metric(before, "mlops_predicted_values_count", model_version="1")
        == 5
    )
    series = [line for line in after.splitlines() if line.startswith(count + "{")]
    assert len(series) == 1, series


# --- unseen categories -----------------------------------------------------------------------


def test_unseen_categories_are_named_in_the_answer_and_counted(models, regressor):
    known = _json_row(models["diabetes"].dropna().iloc[0])
    before = _metric(regressor.get("/metrics").text, "mlops_unseen_category_values_total")
    single = regressor.post("/predict", json={"features": {**known, "clinic": "west"}})
    assert single.status_code == 200, single.text
    assert single.json()["warnings"] == [
        "clinic: 'west' was never seen in training; the model treats it as unknown"
    ]
    assert isinstance(single.json()["prediction"], float)
    rows = [known, {**known, "clinic": "moon"}, {**known, "clinic": None}]
    batch = regressor.post("/predict/batch", json={"rows": rows})
    assert batch.status_code == 200, batch.text
    warnings = [p["warnings"] for p in batch.json()["predictions"]]
    # a null is imputed as in training (the column had missing values): not unseen
    assert warnings == [
        [],
        ["clinic: 'moon' was never seen in training; the model treats it as unknown"],
        [],
    ]
    text = regressor.get("/metrics").text
    after = _metric(text, "mlops_unseen_category_values_total", feature="clinic")
    assert after - before == 2
    assert 'mlops_unseen_category_values_total{feature="clinic"}' in text


def test_a_category_list_cut_short_when_saved_is_not_checked():
    fields = [FeatureField("plan", "string", True), FeatureField("city", "string", True)]
    many = [f"c{i:04d}" for i in range(MAX_STORED_CATEGORIES)]
    schema = DatasetSchema.model_validate(
        {
            "target": "y",
            "features": [
                {"name": "plan", "kind": "categorical", "dtype": "object", "categories": ["a"]},
                {"name": "city", "kind": "categorical", "dtype": "object", "categories": many},
                {"name": "age", "kind": "numeric", "dtype": "float64", "min": 1, "max": 2},
            ],
        }
    )
    checks = category_checks(schema, fields)
    assert [(c.feature, sorted(c.known)) for c in checks] == [("plan", ["a"])]
    assert category_checks(None, fields) == ()


# --- multiclass with class names -------------------------------------------------------------


def test_multiclass_probabilities_are_keyed_by_class_name(models, wine_client):
    settings, features = models["multiclass"], models["wine"]
    rows = features.iloc[[0, 70, 140]]  # one of each cultivar in sklearn's order
    logged = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    expected_class, expected = logged.predict(rows), logged.predict_proba(rows)
    assert list(expected_class) == ["barolo", "grignolino", "barbera"]
    assert wine_client.get("/model").json()["inference"]["path"] == "onnx"
    body = {"rows": [_json_row(r) for _, r in rows.iterrows()]}
    batch = wine_client.post("/predict/batch", json=body)
    assert batch.status_code == 200, batch.text
    for i, answer in enumerate(batch.json()["predictions"]):
        assert answer["prediction"] == expected_class[i]
        assert set(answer["probabilities"]) == {"barbera", "barolo", "grignolino"}
        got = [answer["probabilities"][c] for c in logged.classes_]
        # served through the ONNX graph verified at load: float32, within its tolerance
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=settings.onnx_tolerance)
        assert max(answer["probabilities"], key=answer["probabilities"].get) == expected_class[i]
        assert answer["warnings"] == []
    metrics = wine_client.get("/metrics").text
    assert _metric(metrics, "mlops_predictions_total", prediction="barbera") >= 1


def test_multiclass_feedback_takes_a_class_name_and_refuses_others(wine_client, models):
    row = _json_row(models["wine"].iloc[0])
    request_id = wine_client.post("/predict", json={"features": row}).json()["request_id"]
    ok = wine_client.post("/feedback", json={"request_id": request_id, "label": "barolo"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    bad = wine_client.post("/feedback", json={"request_id": request_id, "label": "merlot"})
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["loc"] == ["body", "label"]
    assert error["msg"] == (
        "unknown class 'merlot'; the model's classes are ['barbera', 'barolo', 'grignolino']"
    )


# --- models logged before tasks, or without a schema ------------------------------------------


def test_a_model_whose_schema_predates_tasks_is_served_as_a_classifier(stack, tmp_path):
    settings = stack(model_name="old-wine")
    path = tmp_path / "wine.csv"
    _wine_with_names().to_csv(path, index=False)
    schema = _register(settings, path, "target", None, LogisticRegression(max_iter=2000))
    champion = Stack(settings).registry.champion()
    old = schema.model_dump(mode="json", exclude={"task", "columns"})
    mlflow.MlflowClient().log_dict(champion.run_id, old, modelstore.SCHEMA_ARTIFACT)
    assert "task" not in mlflow.artifacts.load_dict(
        f"runs:/{champion.run_id}/{modelstore.SCHEMA_ARTIFACT}"
    )
    row = _json_row(load_dataset(path, "target").features.iloc[0])
    with TestClient(create_app(Stack(settings))) as client:
        info = client.get("/model").json()
        assert info["task"] == "classification" and len(info["classes"]) == 3
        answer = client.post("/predict", json={"features": row}).json()
        assert answer["prediction"] == "barolo" and len(answer["probabilities"]) == 3


def test_a_regressor_logged_without_a_schema_is_served_as_a_regressor(stack):
    settings = stack(model_name="bare-regressor")
    frame = load_diabetes(as_frame=True).frame
    features, labels = frame.drop(columns=["target"]), frame["target"]
    pipeline = Pipeline([("model", Ridge())]).fit(features, labels)
    registry = Stack(settings).registry
    registry.use_experiment(settings.experiment_name)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=mlflow.models.infer_signature(features, pipeline.predict(features)),
            serialization_format="skops",
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        )
    registry.make_champion(registry.register(info.model_uri))
    with TestClient(create_app(Stack(settings))) as client:
        assert client.get("/model").json()["task"] == Task.REGRESSION
        row = {k: float(v) for k, v in features.iloc[0].items()}
        answer = client.post("/predict", json={"features": row}).json()
        assert answer["probabilities"] is None
        assert answer["prediction"] == pytest.approx(float(pipeline.predict(features.head(1))[0]))
