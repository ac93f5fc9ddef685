"""Notices that the served alias moved, so predictors reload now rather than at their next poll.

Best effort by design: a lost notice costs at most one poll interval
(``MLOPS_RELOAD_POLL_SECONDS``), because predictors also poll the registry.
"""

from __future__ import annotations

import time

from mlops_stack.logs import get_logger
from mlops_stack.settings import Settings

log = get_logger(__name__)


def publish_model_change(settings: Settings, version: str | None) -> None:
    """Publish ``<model>:<version>:<time>`` on the model events channel when Redis is set."""
    if not settings.redis_url:
        return
    import redis

    message = f"{settings.model_name}:{version or ''}:{time.time()}"
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
        client.publish(settings.model_events_channel, message)
    except Exception as exc:  # the predictors' polling still picks the change up
        log.warning("model_notice_not_sent", error=str(exc)[:200])
