"""API keys and rate limits of the predictor (serving/access.py).

The middleware runs here around a one-route app, so each rule is checked without a model;
test_serving.py checks the whole predictor with keys on.
"""

from __future__ import annotations

import uuid

import pytest

from mlops_stack.serving.access import (
    LocalLimiter,
    RedisLimiter,
)


@pytest.mark.anyio
async def test_redis_counts_are_shared_between_limiters(services):
    caller = f"test-{uuid.uuid4().hex}"
    first = RedisLimiter(2, services.redis_url, LocalLimiter(2))
    second = RedisLimiter(2, services.redis_url, LocalLimiter(2))  # another worker
    assert [await first.hit(caller), await second.hit(caller)] == [0, 0]
    assert await first.hit(caller) > 0
    assert await second.hit(caller) > 0
