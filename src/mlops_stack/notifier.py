"""What the stack tells the outside world: model-change notices on Redis, alerts on a webhook.

Two channels, both best effort by design:

- **Model changes** go on a Redis pub/sub channel so that every predictor reloads at once; a lost
  notice costs at most one poll interval (``MLOPS_RELOAD_POLL_SECONDS``), because predictors also
  poll the registry.
- **Alerts and announcements** are a structured log line and, when ``MLOPS_ALERT_WEBHOOK_URL``
  is set, a Slack-compatible POST (``{"text": ...}`` plus the details as extra keys). A failed
  POST is logged; the alert table remembers it was not sent, so the next monitor run retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpx

from mlops_stack.logs import get_logger
from mlops_stack.names import AlertChangeKind
from mlops_stack.settings import Settings

if TYPE_CHECKING:
    from mlops_stack.monitoring_db import AlertChange

log = get_logger(__name__)


class Notifier:
    """Publishes model changes (Redis) and alerts (log and webhook) for one model."""

    def __init__(
        self,
        *,
        model_name: str,
        redis_url: str | None = None,
        channel: str = "mlops:model-events",
        webhook_url: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.redis_url = redis_url
        self.channel = channel
        self.webhook_url = webhook_url

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier:
        return cls(
            model_name=settings.model_name,
            redis_url=settings.redis_url,
            channel=settings.model_events_channel,
            webhook_url=settings.alert_webhook_url,
        )

    # --- model changes ---------------------------------------------------------------------
    def model_changed(self, version: str | None) -> None:
        """Publish ``<model>:<version>:<time>`` on the model events channel when Redis is set."""
        if not self.redis_url:
            return
        import redis

        message = f"{self.model_name}:{version or ''}:{time.time()}"
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            try:
                client.publish(self.channel, message)
            finally:
                client.close()
        except Exception as exc:  # the predictors' polling still picks the change up
            log.warning("model_notice_not_sent", error=str(exc)[:200])

    # --- alerts ----------------------------------------------------------------------------
    def alerts(
        self, changes: Iterable[AlertChange], *, status: str, run_id: int
    ) -> list[AlertChange]:
        """Log every opened or resolved alert and POST it; returns those the webhook took.

        An ``ongoing`` alert is not repeated: the webhook hears about an alert when it opens and
        when it resolves, not on every run that still sees its condition.
        """
        sent = []
        for change in changes:
            if change.change == AlertChangeKind.ONGOING:
                continue
            log.warning(
                f"alert_{change.change}",
                model=self.model_name,
                condition=change.condition,
                reason=change.reason,
                alert_id=change.alert_id,
                monitor_run=run_id,
            )
            opened = change.change == AlertChangeKind.OPENED
            icon = ":rotating_light:" if opened else ":white_check_mark:"
            text = (
                f"{icon} {self.model_name}: {change.condition} alert {change.change}: "
                f"{change.reason}"
            )
            details = {
                "model": self.model_name,
                "condition": change.condition,
                "state": str(change.change),
                "reason": change.reason,
                "status": status,
                "monitor_run": run_id,
                "alert_id": change.alert_id,
            }
            if self._post(text, details, event="alert_webhook_failed"):
                sent.append(change)
        return sent

    def announce(self, text: str, details: dict[str, Any]) -> bool:
        """A one-off notice (a retrain's outcome): a log line and, if configured, a POST."""
        log.warning("announcement", text=text, **{k: v for k, v in details.items() if k != "text"})
        return self._post(text, details, event="announcement_webhook_failed")

    def _post(self, text: str, details: dict[str, Any], *, event: str) -> bool:
        """The one webhook POST: Slack-compatible body, 5 s timeout, failure logged not raised."""
        if not self.webhook_url:
            return False
        try:
            response = httpx.post(self.webhook_url, json={"text": text, **details}, timeout=5.0)
            response.raise_for_status()
            return True
        except httpx.HTTPError as exc:
            log.error(event, error=str(exc)[:200], alert_id=details.get("alert_id"))
            return False
