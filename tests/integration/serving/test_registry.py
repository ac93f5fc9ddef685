"""The predictor keeps serving while a real MLflow tracking server is down."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlops_stack.flows.train import train_flow
from mlops_stack.serving.app import create_app
from mlops_stack.stack import Stack
from tests.support.paths import REPO
from tests.support.servers import wait_for

EXAMPLES = REPO / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_mlflow(root: Path, port: int) -> subprocess.Popen:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "mlflow.log").open("ab"),
    )

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"mlflow server exited: {(root / 'mlflow.log').read_text()[-2000:]}"
            )
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 120, "the MLflow server")
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    state = {"process": _start_mlflow(tmp_path, port)}

    def restart() -> None:
        state["process"] = _start_mlflow(tmp_path, port)

    def stop() -> None:
        _stop(state["process"])

    yield f"http://127.0.0.1:{port}", stop, restart
    if state["process"].poll() is None:
        _stop(state["process"])


def test_registry_down_serving_continues_and_ready_says_so(stack, mlflow_server):
    uri, stop, restart = mlflow_server
    settings = stack(tracking_uri=uri, candidates="logistic_regression", reload_poll_seconds="0.2")
    train_flow()
    row = {name: 1.0 for name in _feature_names(settings)}
    with TestClient(create_app(Stack(settings))) as client:
        assert client.post("/predict", json={"features": row}).json()["model"]["version"] == "1"
        assert client.get("/ready").json()["registry"]["reachable"] is True
        # the README's example bodies are valid requests for a model on the default data
        json_type = {"Content-Type": "application/json"}  # as the README's curl sends them
        single = client.post(
            "/predict", content=(EXAMPLES / "predict.json").read_bytes(), headers=json_type
        )
        assert single.status_code == 200 and single.json()["prediction"] == 0
        batch = client.post(
            "/predict/batch",
            content=(EXAMPLES / "predict_batch.json").read_bytes(),
            headers=json_type,
        )
        assert [p["prediction"] for p in batch.json()["predictions"]] == [0, 1, 1]

        stop()
        down = wait_for(
            lambda: (r := client.get("/ready").json())["registry"]["reachable"] is False and r,
            90,
            "/ready to report the registry unreachable",
        )
        assert down["ready"] is True and down["registry"]["unreachable_since"]
        for _ in range(20):
            response = client.post("/predict", json={"features": row})
            assert response.status_code == 200
            assert response.json()["model"]["version"] == "1"

        restart()
        wait_for(
            lambda: client.get("/ready").json()["registry"]["reachable"],
            90,
            "/ready to report the registry reachable again",
        )


def _feature_names(settings) -> list[str]:
    from mlops_stack.data import load_dataset

    return list(load_dataset(None, settings.target_column).features.columns)
