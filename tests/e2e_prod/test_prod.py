"""docker-compose.prod.yml from outside, as the internet meets a VM, and from the operator's seat.

File order matters: the rate-limit burst runs last, so that it cannot starve the others.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import uuid

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e_prod.conftest import REPO, compose, psql
from tests.support.servers import wait_for

EXAMPLE = json.loads((REPO / "examples" / "predict.json").read_text())
SERVICES = ["postgres", "redis", "mlflow", "prefect-server", "worker", "api", "dashboard", "nginx"]
# compose-e2e.sh runs the prod stage with the observability profile
PROFILE_SERVICES = ["prometheus"]


def test_predict_needs_a_key_and_health_stays_open(https: httpx.Client, api_key: str):
    missing = https.post("/api/predict", json=EXAMPLE)
    assert missing.status_code == 401
    assert missing.json()["detail"] == "missing API key: send it in the X-API-Key header"
    wrong = https.post("/api/predict", json=EXAMPLE, headers={"X-API-Key": "not-a-key"})
    assert wrong.status_code == 403
    answer = https.post("/api/predict", json=EXAMPLE, headers={"X-API-Key": api_key})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"]
    assert https.get("/api/health").status_code == 200
    assert https.get("/api/metrics", headers={"X-API-Key": api_key}).status_code == 404


def test_https_carries_hsts_and_http_redirects_to_it(https: httpx.Client, http_url: str):
    assert https.get("/").headers["strict-transport-security"].startswith("max-age=")
    plain = httpx.get(f"{http_url}/api/health?x=1", follow_redirects=False, timeout=30)
    assert plain.status_code == 301
    port = os.environ["MLOPS_PUBLIC_HTTPS_PORT"]
    assert plain.headers["location"] == f"https://127.0.0.1:{port}/api/health?x=1"


@pytest.mark.parametrize("path", ["/mlflow/", "/prefect/", "/dashboard/", "/jupyter/"])
def test_the_uis_ask_for_a_login(https: httpx.Client, ui_login, path: str):
    anonymous = https.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert https.get(path, auth=(ui_login[0], "wrong")).status_code == 401
    if path != "/jupyter/":  # JupyterLab is in the `notebooks` profile, not started here
        assert https.get(path, auth=ui_login).status_code == 200


def test_the_dashboard_websocket_upgrades_behind_the_login(https_url: str, ui_login):
    """The UIs' locations set a header of their own (Authorization), so nginx inherits none of
    routes.conf's: ui-auth.conf repeats them, the upgrade among them (Streamlit, Prefect and
    JupyterLab keep a websocket open)."""
    token = base64.b64encode(":".join(ui_login).encode()).decode()
    url = https_url.replace("https://", "wss://") + "/dashboard/_stcore/stream"
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # CI's own cert
    headers = {"Authorization": f"Basic {token}"}
    with connect(url, ssl=unverified, additional_headers=headers, open_timeout=30) as stream:
        assert stream.protocol.state.name == "OPEN"


def test_the_landing_page_and_prometheus_are_behind_the_login(https: httpx.Client, ui_login):
    """Both show the stack's internal state: services, versions, alerts, every series."""
    for path in ("/", "/dashboard/status.json", "/prometheus/", "/prometheus/api/v1/targets"):
        assert https.get(path).status_code == 401, path
    landing = https.get("/", auth=ui_login)
    assert landing.status_code == 200
    assert 'data-service="Prometheus" data-state="up"' in landing.text
    targets = https.get("/prometheus/api/v1/targets", auth=ui_login)
    assert targets.status_code == 200
    jobs = {t["labels"]["job"] for t in targets.json()["data"]["activeTargets"]}
    assert {"predictor", "dashboard", "prometheus"} <= jobs


def test_only_nginx_publishes_ports_and_only_80_and_443():
    published = {}
    for line in compose("ps", "--format", "json").stdout.splitlines():
        for entry in json.loads(line) if line.startswith("[") else [json.loads(line)]:
            ports = {p["TargetPort"] for p in entry.get("Publishers") or [] if p["PublishedPort"]}
            if ports:
                published[entry["Service"]] = ports
    assert published == {"nginx": {8080, 8443}}
    # and nothing answers on the services' own ports on the host's loopback
    for port in (5000, 4200, 8000, 8501, 8888, 9090):
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something listens on {port}"


@pytest.mark.parametrize("service", [*SERVICES, *PROFILE_SERVICES, "backup"])
def test_containers_run_as_non_root(service: str):
    uid = compose("exec", "-T", service, "id", "-u").stdout.strip()
    assert uid.isdigit() and uid != "0", f"{service} runs as uid {uid}"


def test_root_filesystems_are_read_only():
    for service in ["mlflow", "api", "worker", "nginx", "postgres", "prometheus"]:
        done = compose("exec", "-T", service, "touch", "/probe-write", check=False)
        assert done.returncode != 0 and "Read-only file system" in done.stderr, service


def test_a_missing_secret_or_a_development_default_stops_a_service():
    missing = compose(
        "run", "--rm", "--no-deps", "-e", "MLOPS_API_KEYS_FILE=/run/secrets/not-created",
        "api", "mlops", "serve", "api", check=False, timeout=120,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "MLOPS_API_KEYS_FILE=/run/secrets/not-created" in missing.stderr
    # the prod file removes docker-compose.yml's dev URL; one given back by hand is refused
    dev_url = "postgresql+psycopg2://mlops:mlops-dev-only@postgres:5432/mlflow"
    dev_default = compose(
        "run", "--rm", "--no-deps", "-e", "MLFLOW_BACKEND_STORE_URI_FILE=",
        "-e", f"MLFLOW_BACKEND_STORE_URI={dev_url}", "mlflow", "true",
        check=False, timeout=120,
    )  # fmt: skip
    assert dev_default.returncode != 0
    assert "development default secret in MLFLOW_BACKEND_STORE_URI" in dev_default.stderr


def test_a_backup_restores_a_dropped_monitoring_database(https: httpx.Client, api_key: str):
    request_id = f"backup-{uuid.uuid4().hex[:8]}"
    answer = https.post(
        "/api/predict", json=EXAMPLE, headers={"X-API-Key": api_key, "X-Request-ID": request_id}
    )
    assert answer.status_code == 200, answer.text
    query = f"SELECT count(*) FROM predictions WHERE request_id = '{request_id}'"
    wait_for(lambda: psql(query) == "1", timeout=60, what="the prediction in PostgreSQL")
    rows = psql("SELECT count(*) FROM predictions")

    taken = compose("exec", "-T", "backup", "mlops-backup", "now")
    assert "taken" in taken.stderr
    psql("DROP DATABASE monitoring WITH (FORCE)", database="postgres")
    assert psql("SELECT count(*) FROM pg_database WHERE datname = 'monitoring'", "postgres") == "0"

    compose("exec", "-T", "backup", "mlops-backup", "restore", "latest")
    assert psql(query) == "1"
    assert psql("SELECT count(*) FROM predictions") == rows
    # the services reconnect: a new prediction lands in the restored database
    again = f"after-restore-{uuid.uuid4().hex[:8]}"
    https.post(
        "/api/predict", json=EXAMPLE, headers={"X-API-Key": api_key, "X-Request-ID": again}
    ).raise_for_status()
    wait_for(
        lambda: psql(f"SELECT count(*) FROM predictions WHERE request_id = '{again}'") == "1",
        timeout=120,
        what="a prediction made after the restore in PostgreSQL",
    )


def test_a_burst_past_the_limit_gets_429_with_retry_after(https: httpx.Client, api_key: str):
    statuses, retry_after = [], None
    for _ in range(150):
        answer = https.post("/api/predict", json=EXAMPLE, headers={"X-API-Key": api_key})
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            retry_after = answer.headers.get("retry-after")
    assert set(statuses) == {200, 429}, statuses
    assert statuses[0] == 200
    assert retry_after is not None and int(retry_after) >= 1
