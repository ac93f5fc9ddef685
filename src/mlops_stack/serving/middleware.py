"""Request id, body size bound, access log and HTTP metrics, as plain ASGI middleware.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: no streaming wrapper and no extra
task per request, which shows in the predictor's requests per second.
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops_stack.logs import get_logger
from mlops_stack.serving.metrics import PredictorMetrics

log = get_logger("mlops_stack.api")
ROUTES = ("/predict", "/predict/batch", "/feedback", "/health", "/ready", "/model", "/metrics")
"""Route labels of the HTTP metrics; any other path counts as ``other`` (bounded cardinality)."""
QUIET_ROUTES = frozenset({"/health", "/metrics"})


class BodyTooLarge(Exception):
    """The body grew past the bound while it was read (no or a false Content-Length)."""


class RequestContextMiddleware:
    """Gives every request an id (``X-Request-ID`` in and out), refuses bodies over
    ``max_body`` bytes with 413, and logs and counts every answer, refusals included."""

    def __init__(self, app: ASGIApp, metrics: PredictorMetrics, max_body: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers.get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await _too_large(send_with_id, self.max_body)
            else:
                await self.app(scope, self._bounded(receive), send_with_id)
        except BodyTooLarge:
            await _too_large(send_with_id, self.max_body)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            # probes (healthchecks every few seconds, Prometheus scrapes) would drown the log
            emit = log.debug if route in QUIET_ROUTES and status["code"] < 400 else log.info
            emit(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status["code"],
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` that raises BodyTooLarge once more than ``max_body`` bytes came in."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        return bounded


def _request_id(given: bytes | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one."""
    if given:
        text = given.decode("latin-1").strip()
        if 0 < len(text) <= 64 and text.isprintable():
            return text
    return uuid.uuid4().hex


async def _too_large(send: Send, limit: int) -> None:
    """413 with the same ``{"detail": ...}`` body as every other error."""
    body = b'{"detail":"request body larger than ' + str(limit).encode() + b' bytes"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
