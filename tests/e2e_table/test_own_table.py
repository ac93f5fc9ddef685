"""A regression table nobody here wrote, served by the compose stack by configuration alone.

What a user does (README, "Your own data"): a CSV in the mounted directory, its path, target and
model name in the env file, `docker compose up`. The worker's bootstrap run trains on it; these
tests reach the champion through nginx only, as the user would.
"""

from __future__ import annotations

import math
import uuid

import pytest
from sklearn.datasets import load_diabetes

from tests.e2e.conftest import psql
from tests.support.servers import wait_for

TABLE = load_diabetes(as_frame=True).frame  # what compose-e2e.sh wrote to the mounted CSV


def _row(index: int) -> dict[str, float]:
    return {k: float(v) for k, v in TABLE.drop(columns="target").iloc[index].items()}


def test_the_champion_is_the_configured_model_trained_on_the_table(http, model_name):
    ready = http.get("/api/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model"]["name"] == model_name
    model = http.get("/api/model").json()
    assert model["name"] == model_name and model["version"] is not None
    # the signature is the table's ten feature columns, not the built-in table's thirty
    assert {f["name"] for f in model["features"]} == set(TABLE.columns) - {"target"}
    assert model["classes"] == []  # a regressor: no classes


def test_a_prediction_is_a_number_in_the_target_range(http, model_name):
    request_id = f"e2e-table-{uuid.uuid4().hex[:12]}"
    answer = http.post(
        "/api/predict", json={"features": _row(0)}, headers={"X-Request-ID": request_id}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"]["name"] == model_name and body["probabilities"] is None
    prediction = body["prediction"]
    assert isinstance(prediction, float) and math.isfinite(prediction), body
    # the target (disease progression a year on) runs from 25 to 346; a regressor stays near
    low, high = TABLE["target"].min(), TABLE["target"].max()
    assert low - 50 < prediction < high + 50, prediction
    # the row reaches PostgreSQL (Redis stream, the worker's writer), the numeric label too
    wait_for(
        lambda: psql(f"SELECT count(*) FROM predictions WHERE request_id = '{request_id}'") == "1",
        timeout=60,
        what="the prediction row in PostgreSQL",
    )
    label = float(TABLE["target"].iloc[0])
    feedback = http.post("/api/feedback", json={"request_id": request_id, "label": label})
    assert feedback.status_code in (200, 202), feedback.text
    assert feedback.json()["accepted"] == 1
    stored = psql(f"SELECT label FROM feedback WHERE request_id = '{request_id}'")
    assert float(stored) == pytest.approx(label)


def test_a_batch_of_rows_gets_one_number_each(http):
    rows = [_row(i) for i in range(5)]
    answer = http.post("/api/predict/batch", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    predictions = [p["prediction"] for p in answer.json()["predictions"]]
    assert len(predictions) == 5 and all(isinstance(p, float) for p in predictions)
    assert len(set(predictions)) > 1  # a model, not a constant


def test_a_bad_value_is_a_422_naming_the_field(http):
    answer = http.post("/api/predict", json={"features": dict(_row(0), bmi="heavy")})
    assert answer.status_code == 422 and "bmi" in answer.text
