"""The compiled (ONNX) inference path: chosen only when verified, and answering as the pipeline.

Every model is a real pipeline of the stack's candidates (``training.build_candidates``), fitted
on a seeded split of a real table and logged with ``modelstore.log_pipeline`` (holdout sample
included) into an embedded MLflow, then loaded the way the predictor loads it (``load_version``).
Answers through the ONNX session are compared with the same ``ServedModel`` scoring through its
pipeline, on rows that include missing values.
"""

from __future__ import annotations

import dataclasses
import threading

import mlflow
import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlops_stack import modelstore, training
from mlops_stack.data import BUILTIN_DATASET, BUILTIN_REGRESSION_DATASET, infer_schema, load_dataset
from mlops_stack.names import Task
from mlops_stack.serving import compiled as compiledmod
from mlops_stack.serving.app import create_app
from mlops_stack.serving.model import ServedModel, load_version
from mlops_stack.settings import Settings, get_settings
from mlops_stack.stack import Stack

from .conftest import mixed_table, xor_table

TOLERANCE = 1e-5
MODELS = {  # model name -> (table, target, candidate)
    "cancer-linear": (BUILTIN_DATASET, "target", "linear"),
    "cancer-forest": (BUILTIN_DATASET, "target", "random_forest"),
    "diabetes-linear": (BUILTIN_REGRESSION_DATASET, "target", "linear"),
    "diabetes-forest": (BUILTIN_REGRESSION_DATASET, "target", "random_forest"),
    "customers-linear": ("customers.csv", "churn", "linear"),
    "tagged-forest": ("tagged.csv", "label", "random_forest"),  # numeric + a dropped ID column
}


def _log(settings: Settings, table: str, target: str, candidate: str, *, holdout: bool) -> None:
    """Fit ``candidate`` on a seeded split of ``table``, log it as training does (with the test
    split as holdout unless ``holdout`` is False: a model logged before holdouts were) and make
    it the champion of ``settings.model_name``."""
    dataset = load_dataset(table, target)
    schema = infer_schema(dataset)
    split = training.split_data(
        dataset.features, dataset.labels, test_size=0.25, seed=0, task=schema.task
    )
    (pipeline,) = training.build_candidates(schema, seed=0, names=[candidate]).values()
    if candidate == "random_forest":
        pipeline.set_params(model__n_estimators=30)  # the same converter, a quicker fit
    pipeline.fit(split.X_train, split.y_train)
    registry = Stack(settings).registry
    registry.use_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=settings.model_name):
        uri = modelstore.log_pipeline(
            pipeline,
            split.X_train,
            schema,
            reference_rows=200,
            seed=0,
            X_holdout=split.X_test if holdout else None,
        )
    registry.make_champion(registry.register(uri))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Settings per model name, every model of MODELS logged and made champion, plus one logged
    without a holdout ("cancer-old")."""
    root = tmp_path_factory.mktemp("compiled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_DATA_DIR", str(root / "mlops-data"))
        mp.setenv("MLOPS_PREDICTION_LOG_FLUSH_SECONDS", "0.05")
        mp.chdir(root)
        mixed_table().to_csv(root / "customers.csv", index=False)
        tagged = xor_table()
        tagged.insert(0, "customer_id", [f"c-{i:05d}" for i in range(len(tagged))])
        tagged.to_csv(root / "tagged.csv", index=False)
        get_settings.cache_clear()
        base = get_settings()
        settings = {}
        for name, (table, target, candidate) in MODELS.items():
            settings[name] = base.model_copy(update={"model_name": name})
            _log(settings[name], table, target, candidate, holdout=True)
        settings["cancer-old"] = base.model_copy(update={"model_name": "cancer-old"})
        _log(settings["cancer-old"], BUILTIN_DATASET, "target", "linear", holdout=False)
        yield settings
    get_settings.cache_clear()


def _load(settings: Settings, **overrides) -> ServedModel:
    options = {"inference_path": "auto", "onnx_tolerance": TOLERANCE} | overrides
    return load_version(
        Stack(settings).registry.client, settings.model_name, "1", max_batch_rows=100, **options
    )


def _rows(table: str, target: str, n: int = 60) -> list[dict]:
    """``n`` rows of the table as validated rows, one numeric cell in five set to None."""
    frame = load_dataset(table, target).features.head(n)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    for i, row in enumerate(rows):
        row[numeric[i % len(numeric)]] = None
    return rows


@pytest.mark.parametrize(
    "name",
    ["cancer-linear", "cancer-forest", "diabetes-linear", "diabetes-forest"],
)
def test_numeric_models_serve_through_onnx_and_answer_as_the_pipeline(registry, name):
    model = _load(registry[name])
    choice = model.inference
    assert (choice.path, choice.reason, choice.verified_on) == ("onnx", "verified", "holdout")
    holdout = modelstore.load_holdout(model.run_id)
    assert holdout is not None and choice.verified_rows == 2 * len(holdout)
    assert choice.max_abs_diff is not None
    if model.task is Task.CLASSIFICATION:
        assert choice.max_abs_diff <= TOLERANCE
    else:  # relative and absolute: a value of ~300 in float32 keeps ~5 decimals
        largest = float(np.abs(model.pipeline.predict(holdout)).max())
        assert choice.max_abs_diff <= TOLERANCE * (1 + largest)
    table, target, _ = MODELS[name]
    rows = _rows(table, target)
    assert any(v is None for row in rows for v in row.values())
    onnx = model.predict(rows)
    pipeline = dataclasses.replace(model, compiled=None).predict(rows)
    for got, expected in zip(onnx, pipeline, strict=True):
        assert got.unseen == expected.unseen == []
        if model.task is Task.REGRESSION:
            assert isinstance(got.prediction, float) and got.probabilities is None
            assert got.prediction == pytest.approx(
                expected.prediction, rel=TOLERANCE, abs=TOLERANCE
            )
            continue
        assert got.prediction == expected.prediction and type(got.prediction) is int
        assert got.probabilities is not None and expected.probabilities is not None
        assert list(got.probabilities) == list(expected.probabilities) == ["0", "1"]
        for label, p in got.probabilities.items():
            assert isinstance(p, float)
            assert abs(p - expected.probabilities[label]) <= TOLERANCE


def test_a_text_column_the_pipeline_drops_does_not_stop_the_graph(registry):
    model = _load(registry["tagged-forest"])
    assert [(f.name, f.dtype) for f in model.fields][0] == ("customer_id", "string")
    assert model.inference.path == "onnx", model.inference.reason
    frame = load_dataset("tagged.csv", "label").features.head(50)
    rows = frame.to_dict("records")
    rows[0]["customer_id"] = None  # optional: the pipeline ignores it
    answers = model.predict(rows)
    expected = model.pipeline.predict_proba(frame)
    assert [a.prediction for a in answers] == list(model.pipeline.classes_[expected.argmax(1)])
    got = np.array([[a.probabilities[str(c)] for c in model.classes] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_one_call_scores_many_rows_as_each_alone(registry):
    """The micro-batcher's case: one call with every row answers each row as a call of its own."""
    model = _load(registry["cancer-forest"])
    rows = _rows(BUILTIN_DATASET, "target", n=40)
    together = model.predict(rows)
    assert together == [model.predict([row])[0] for row in rows]


def test_a_table_with_categories_falls_back_to_the_pipeline(registry):
    model = _load(registry["customers-linear"])
    assert model.inference.path == "sklearn" and model.compiled is None
    assert model.inference.reason.startswith("conversion failed: ")
    assert (model.inference.verified_on, model.inference.verified_rows) == (None, 0)
    frame = load_dataset("customers.csv", "churn").features.head(30)  # as training read it
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    expected = model.pipeline.predict_proba(frame)
    answers = model.predict(rows)
    for answer, probabilities in zip(answers, expected, strict=True):
        assert answer.probabilities is not None
        got = [answer.probabilities[c] for c in ("no", "yes")]
        np.testing.assert_allclose(got, probabilities, rtol=0, atol=1e-12)


def test_a_model_without_holdout_is_verified_on_its_reference_sample(registry):
    settings = registry["cancer-old"]
    model = _load(settings)
    assert modelstore.load_holdout(model.run_id) is None
    reference = modelstore.load_reference(model.run_id)
    choice = model.inference
    assert (choice.path, choice.verified_on) == ("onnx", "reference sample")
    assert choice.verified_rows == 2 * len(reference)


def test_a_graph_that_answers_differently_is_refused(registry, monkeypatch):
    """A converter producing another model (here: the forest's graph for the linear model)
    fails verification: the pipeline serves, with the reason."""
    forest = _load(registry["cancer-forest"])
    assert forest.compiled is not None
    monkeypatch.setattr(compiledmod, "convert", lambda *args: forest.compiled)
    model = _load(registry["cancer-linear"])
    assert (model.inference.path, model.compiled) == ("sklearn", None)
    assert "another class" in model.inference.reason or "differ" in model.inference.reason
    assert model.inference.verified_on == "holdout"
    assert model.inference.max_abs_diff is not None and model.inference.max_abs_diff > TOLERANCE


def test_a_difference_beyond_the_tolerance_is_refused(registry):
    """float32 differs from float64 by ~1e-7: a tolerance below what was measured refuses."""
    verified = _load(registry["cancer-forest"]).inference
    assert verified.max_abs_diff is not None and verified.max_abs_diff > 0
    model = _load(registry["cancer-forest"], onnx_tolerance=verified.max_abs_diff / 2)
    assert model.inference.path == "sklearn"
    assert model.inference.reason.startswith("probabilities differ by up to")
    assert model.inference.max_abs_diff == verified.max_abs_diff


def test_a_verification_past_its_deadline_serves_the_pipeline(registry, monkeypatch):
    release = threading.Event()

    def stuck(*args):
        release.wait()
        raise compiledmod.NotCompiled("released")

    monkeypatch.setattr(compiledmod, "convert", stuck)
    model = _load(registry["cancer-linear"])
    pipeline = model.pipeline
    holdout = modelstore.load_holdout(model.run_id)
    try:
        compiled, choice = compiledmod.choose(
            pipeline,
            model.fields,
            model.task,
            sample=holdout,
            verified_on="holdout",
            tolerance=TOLERANCE,
            timeout=0.2,
        )
    finally:
        release.set()
    assert compiled is None and choice.path == "sklearn"
    assert choice.reason == "compiling and verifying took over 0.2 s"


def test_the_setting_forces_the_pipeline(registry):
    model = _load(registry["cancer-linear"], inference_path="sklearn")
    assert (model.inference.path, model.inference.reason) == (
        "sklearn",
        "MLOPS_INFERENCE_PATH=sklearn",
    )
    assert model.compiled is None


def test_model_reports_the_inference_path_and_predict_uses_it(registry):
    settings = registry["cancer-linear"]
    with TestClient(create_app(Stack(settings))) as client:
        info = client.get("/model").json()["inference"]
        assert info["path"] == "onnx" and info["reason"] == "verified"
        assert info["verified_on"] == "holdout" and info["verified_rows"] > 0
        assert 0 <= info["max_abs_diff"] <= TOLERANCE and info["tolerance"] == TOLERANCE
        frame = load_dataset(BUILTIN_DATASET, "target").features.head(1)
        answer = client.post("/predict", json={"features": frame.iloc[0].to_dict()}).json()
        pipeline = mlflow.sklearn.load_model(f"models:/{settings.model_name}/1")
        expected = pipeline.predict_proba(frame)[0]
        assert answer["prediction"] == int(expected.argmax())
        got = [answer["probabilities"][c] for c in ("0", "1")]
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    forced = settings.model_copy(update={"inference_path": "sklearn"})
    with TestClient(create_app(Stack(forced))) as client:
        info = client.get("/model").json()["inference"]
        assert info == {
            "path": "sklearn",
            "reason": "MLOPS_INFERENCE_PATH=sklearn",
            "verified_on": None,
            "verified_rows": 0,
            "max_abs_diff": None,
            "tolerance": None,
        }
