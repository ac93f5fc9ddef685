"""Alerts: a row in the monitoring database, a structured log line, and a webhook POST.

The alert table de-duplicates (one open alert per model and condition until it clears), so the
webhook hears about an alert twice: when it opens and when it resolves, not on every run that
still sees the condition. The webhook body is Slack-compatible (``{"text": ...}``) with the
details as extra keys; a failed POST is logged and retried by the next run.
"""

from __future__ import annotations

import httpx

from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db.results import AlertChange, ResultStore

log = get_logger(__name__)


def notify(
    changes: list[AlertChange],
    results: ResultStore,
    *,
    model: str,
    webhook_url: str | None,
    status: str,
    run_id: int,
) -> list[AlertChange]:
    """Log every opened or resolved alert and POST it to the webhook; returns those sent."""
    sent = []
    for change in changes:
        if change.change == "ongoing":
            continue
        event = f"alert_{change.change}"
        log.warning(
            event,
            model=model,
            condition=change.condition,
            reason=change.reason,
            alert_id=change.alert_id,
            monitor_run=run_id,
        )
        if webhook_url and _post(webhook_url, change, model=model, status=status, run_id=run_id):
            results.mark_notified(change.alert_id)
            sent.append(change)
    return sent


def _post(url: str, change: AlertChange, *, model: str, status: str, run_id: int) -> bool:
    icon = ":rotating_light:" if change.change == "opened" else ":white_check_mark:"
    body = {
        "text": f"{icon} {model}: {change.condition} alert {change.change}: {change.reason}",
        "model": model,
        "condition": change.condition,
        "state": change.change,
        "reason": change.reason,
        "status": status,
        "monitor_run": run_id,
        "alert_id": change.alert_id,
    }
    try:
        response = httpx.post(url, json=body, timeout=5.0)
        response.raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.error("alert_webhook_failed", error=str(exc)[:200], alert_id=change.alert_id)
        return False


def announce(settings, text: str, details: dict[str, object]) -> bool:
    """A one-off notice (a retrain's outcome): a log line and, if configured, a webhook POST."""
    log.warning("announcement", text=text, **{k: v for k, v in details.items() if k != "text"})
    if not settings.alert_webhook_url:
        return False
    try:
        response = httpx.post(
            settings.alert_webhook_url, json={"text": text, **details}, timeout=5.0
        )
        response.raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.error("announcement_webhook_failed", error=str(exc)[:200])
        return False
