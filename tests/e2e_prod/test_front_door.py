"""The prod nginx as the internet meets it: redirects, the TLS cipher list, body limits by
route, the request id it forwards, a repeated API key, its temp files on disk.

infrastructure/ci/nginx-check.sh checks the same files with a bare nginx and no upstream; these
tests go through the running stack.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e_prod.conftest import REPO, compose
from tests.support.servers import wait_for

EXAMPLE = json.loads((REPO / "examples" / "predict.json").read_text())
REDIRECTS = ["/api", "/mlflow", "/prefect", "/dashboard", "/jupyter", "/prometheus"]


def _public_port() -> str:
    return os.environ["MLOPS_PUBLIC_HTTPS_PORT"]


@pytest.mark.parametrize("path", REDIRECTS)
def test_a_path_without_its_slash_redirects_relatively(https: httpx.Client, path: str):
    """nginx's own redirects carry the path only: an absolute one named the container's port
    (https://host:8443/mlflow/), which is never published."""
    answer = https.get(path, follow_redirects=False)
    assert answer.status_code == 301
    assert answer.headers["location"] == f"{path}/"


def test_http_redirects_to_https_on_the_published_port(http_url: str):
    answer = httpx.get(f"{http_url}/mlflow", follow_redirects=False, timeout=30)
    assert answer.status_code == 301
    assert answer.headers["location"] == f"https://127.0.0.1:{_public_port()}/mlflow"


def test_the_predictor_never_redirects_to_plain_http_or_off_its_prefix(
    https: httpx.Client, api_key: str
):
    """`POST /api/predict/` once got `307 http://host:<tls port>/predict`: plain http, /api
    dropped. Whatever it answers now, a redirect keeps the scheme, the port and /api."""
    answer = https.post(
        "/api/predict/", json=EXAMPLE, headers={"X-API-Key": api_key}, follow_redirects=False
    )
    if answer.is_redirect:
        target = urlsplit(answer.headers["location"])
        assert target.path.startswith("/api/"), answer.headers["location"]
        assert not target.scheme or (target.scheme, str(target.port)) == ("https", _public_port())


def _tls12_handshake(cipher: str) -> str:
    """The TLS 1.2 suite the server agrees to when the client offers only ``cipher``; raises
    ssl.SSLError when it refuses. @SECLEVEL=0: the client itself must be willing to offer it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # CI's own certificate
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    address = ("127.0.0.1", int(_public_port()))
    with socket.create_connection(address, timeout=10) as raw, context.wrap_socket(raw) as tls:
        return tls.cipher()[0]


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"])
def test_tls12_accepts_forward_secret_aead_suites(cipher: str):
    assert _tls12_handshake(cipher) == cipher


@pytest.mark.parametrize(
    "cipher", ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA256", "AES128-GCM-SHA256"]
)
def test_tls12_refuses_cbc_sha1_and_static_rsa_suites(cipher: str):
    with pytest.raises(ssl.SSLError):
        _tls12_handshake(cipher)


def test_two_api_key_headers_are_refused(https: httpx.Client, api_key: str):
    """A decoy key first and the real one second once escaped the real key's nginx limit.
    nginx 1.23+ answers 400 itself; older nginx passes the first and the predictor refuses."""
    headers = [("X-API-Key", "decoy"), ("X-API-Key", api_key), ("Content-Type", "application/json")]
    answer = https.post("/api/predict", content=json.dumps(EXAMPLE), headers=headers)
    assert answer.status_code == 400, answer.text


def test_a_body_too_large_for_its_route_is_refused_at_nginx(https: httpx.Client, api_key: str):
    """One row fits in 64 KB: a 70 KB /predict body gets nginx's 413, key or not, before the
    predictor sees a byte of it."""
    padded = {"features": {**EXAMPLE["features"]}, "pad": "x" * 70_000}
    for headers in ({}, {"X-API-Key": api_key}):
        answer = https.post("/api/predict", json=padded, headers=headers)
        assert answer.status_code == 413
        # nginx's own page; the predictor's 413 is JSON
        assert "413 Request Entity Too Large" in answer.text, answer.text[:300]


def test_a_batch_of_the_most_rows_passes_nginx(https: httpx.Client, api_key: str):
    """MLOPS_MAX_BATCH_ROWS (1000) rows of the example: under /api/predict/batch's 2 MB."""
    batch = {"rows": [EXAMPLE["features"]] * 1000}
    answer = https.post("/api/predict/batch", json=batch, headers={"X-API-Key": api_key})
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.json()["predictions"]) == 1000


def test_the_request_id_is_the_callers_or_nginxs(https: httpx.Client, api_key: str):
    """The id the predictor answers with is the caller's, or the one nginx set (it is in nginx's
    access log): the same one on every replica a retried request reaches."""
    mine = f"front-door-{uuid.uuid4().hex[:8]}"
    headers = {"X-API-Key": api_key}
    given = https.post("/api/predict", json=EXAMPLE, headers={**headers, "X-Request-ID": mine})
    assert given.status_code == 200 and given.json()["request_id"] == mine
    unnamed = https.post("/api/predict", json=EXAMPLE, headers=headers)
    assert unnamed.status_code == 200
    nginx_id = unnamed.json()["request_id"]
    wait_for(
        lambda: nginx_id in compose("logs", "--no-log-prefix", "--since", "5m", "nginx").stdout,
        timeout=30,
        what=f"nginx's access log naming the request id {nginx_id}",
    )


def test_nginx_buffers_bodies_on_disk_not_in_memory():
    """Bodies beyond the 16 KB memory buffer go to /var/cache/nginx: the nginx-temp volume,
    writable by nginx, not the /tmp tmpfs that counted them in nginx's memory limit."""
    kind = compose("exec", "-T", "nginx", "stat", "-f", "-c", "%T", "/var/cache/nginx").stdout
    assert kind.strip() not in ("tmpfs", "ramfs"), kind
    probe = compose(
        "exec", "-T", "nginx", "bash", "-c",
        "touch /var/cache/nginx/.probe && rm /var/cache/nginx/.probe && ls /var/cache/nginx",
    )  # fmt: skip
    assert {"client_body", "proxy"} <= set(probe.stdout.split())
