"""API keys and rate limits of the predictor (serving/access.py).

The middleware runs here around a one-route app, so each rule is checked without a model;
test_serving.py checks the whole predictor with keys on.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlops_stack.serving.access import (
    AccessMiddleware,
    KeyRing,
    LocalLimiter,
    RedisLimiter,
    configured_keys,
    digest,
    new_api_key,
)
from mlops_stack.settings import Settings

ALICE, BOB = new_api_key(), new_api_key()
KEYS = f"alice:{digest(ALICE)}\n# a comment\nbob:{digest(BOB)}"


def _app(keys: str | None, limiter=None, per_minute: int = 0) -> TestClient:
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/predict")
    async def predict():
        return {"prediction": 1}

    app.add_middleware(
        AccessMiddleware, keys=KeyRing.parse(keys), limiter=limiter, per_minute=per_minute
    )
    return TestClient(app)


def test_no_key_is_401_naming_the_header_and_health_stays_open():
    client = _app(KEYS)
    missing = client.post("/predict")
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing API key: send it in the X-API-Key header"}
    assert missing.headers["www-authenticate"] == "X-API-Key"
    assert client.get("/health").status_code == 200


def test_a_wrong_key_is_403_and_each_configured_key_is_accepted():
    client = _app(KEYS)
    wrong = client.post("/predict", headers={"X-API-Key": ALICE[:-1] + "x"})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "invalid API key"}
    for key in (ALICE, BOB):
        assert client.post("/predict", headers={"X-API-Key": key}).json() == {"prediction": 1}


def test_without_keys_configured_nothing_is_asked():
    assert _app(None).post("/predict").status_code == 200


@pytest.mark.parametrize("keys", [KEYS, None], ids=["keys-on", "keys-off"])
@pytest.mark.parametrize(
    "presented", [(BOB, ALICE), ("decoy", ALICE), (ALICE, ALICE)], ids=["two", "decoy", "same"]
)
def test_more_than_one_key_header_is_400_on_every_path(keys, presented):
    """A proxy that counts the first key and an app that trusts the last would disagree on
    who is calling (nginx's per-key limit was escaped that way): two are never accepted."""
    client = _app(keys)
    headers = [("X-API-Key", key) for key in presented]
    for method, path in (("POST", "/predict"), ("GET", "/health")):
        refused = client.request(method, path, headers=headers)
        assert refused.status_code == 400, (method, path)
        assert refused.json() == {"detail": "more than one X-API-Key header"}
    assert client.post("/predict", headers={"X-API-Key": ALICE}).status_code == 200


def test_the_ring_names_the_key_presented_and_refuses_digests_as_keys():
    ring = KeyRing.parse(KEYS)
    assert ring.names == ["alice", "bob"]
    assert ring.identify(BOB) == "bob"
    assert ring.identify(digest(BOB)) is None  # a leaked secret file is no key


@pytest.mark.parametrize(
    "text",
    ["alice", "alice:abc", f"alice {digest(ALICE)}", f"a:{digest(ALICE)},a:{digest(BOB)}"],
    ids=["no-digest", "short-digest", "space-not-colon", "duplicate-name"],  # keys are random
)
def test_malformed_entries_are_refused_without_echoing_them(text):
    with pytest.raises(ValueError) as error:
        KeyRing.parse(text)
    assert digest(ALICE) not in str(error.value)
    assert "MLOPS_API_KEYS" in str(error.value)


def test_production_without_keys_is_refused(monkeypatch):
    monkeypatch.delenv("MLOPS_API_KEYS", raising=False)
    settings = Settings(
        _env_file=None,
        environment="production",
        tracking_uri="http://mlflow:5000/mlflow",
        monitoring_db_url="postgresql+psycopg2://mlops:s3cret@postgres/monitoring",
    )
    with pytest.raises(ValueError, match="MLOPS_API_KEYS_FILE"):
        configured_keys(settings)
    assert configured_keys(settings.model_copy(update={"api_keys": KEYS})).names == [
        "alice",
        "bob",
    ]


def test_the_limit_is_per_key_with_retry_after():
    client = _app(KEYS, LocalLimiter(per_minute=3), per_minute=3)
    alice = {"X-API-Key": ALICE}
    assert [client.post("/predict", headers=alice).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    refused = client.post("/predict", headers=alice)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3 requests per minute" in refused.json()["detail"]
    # bob has his own count; probes are never limited
    assert client.post("/predict", headers={"X-API-Key": BOB}).status_code == 200
    assert client.get("/health").status_code == 200


def test_without_keys_the_limit_is_per_client_address():
    client = _app(None, LocalLimiter(per_minute=1), per_minute=1)
    assert client.post("/predict", headers={"X-Real-IP": "10.0.0.1"}).status_code == 200
    assert client.post("/predict", headers={"X-Real-IP": "10.0.0.1"}).status_code == 429
    assert client.post("/predict", headers={"X-Real-IP": "10.0.0.2"}).status_code == 200


@pytest.mark.anyio
async def test_redis_down_degrades_to_counting_in_the_process():
    # nothing listens on port 9 (discard): every Redis call fails fast
    limiter = RedisLimiter(2, "redis://127.0.0.1:9/0", LocalLimiter(2))
    results = [await limiter.hit("caller") for _ in range(3)]
    assert results[:2] == [0, 0] and results[2] > 0
