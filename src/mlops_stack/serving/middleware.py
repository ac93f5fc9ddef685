"""Request id, body size bound, access log, HTTP metrics, unexpected errors and the JSON
content type, as plain ASGI middleware.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: no streaming wrapper and no extra
task per request, which shows in the predictor's requests per second.
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops_stack.logs import get_logger
from mlops_stack.serving.asgi import route_path, send_json
from mlops_stack.serving.metrics import PredictorMetrics

log = get_logger("mlops_stack.api")
ROUTES = ("/predict", "/predict/batch", "/feedback", "/health", "/ready", "/model", "/metrics")
"""Route labels of the HTTP metrics; any other path counts as ``other`` (bounded cardinality)."""
QUIET_ROUTES = frozenset({"/health", "/metrics"})
JSON_ROUTES = frozenset({"/predict", "/predict/batch", "/feedback"})
"""The routes that take a body: a JSON one, said so in Content-Type."""
JSON_MEDIA_TYPE = "application/json"


class BodyTooLarge(Exception):
    """The body grew past the bound while it was read (no or a false Content-Length)."""


class RequestContextMiddleware:
    """Gives every request an id (``X-Request-ID`` in and out), refuses bodies over
    ``max_body`` bytes with 413, and logs and counts every answer, refusals included.

    An exception no handler took ends here: the client gets 500 with the request id to quote,
    and the request's one log line carries the error and its traceback (bounded, no locals,
    rate-limited: ``mlops_stack.logs``). It is not raised further, so neither Starlette nor
    uvicorn logs it a second and third time.
    """

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
        status = {"code": 500, "started": False}
        failure: Exception | None = None
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
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
        except Exception as exc:  # the last stop: answer 500 and log it, once
            failure = exc
            if not status["started"]:
                await _internal_error(send_with_id, request_id)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status["code"],
                "ms": round(elapsed * 1000, 2),
            }
            if failure is not None:
                log.error("request", **fields, error=str(failure)[:300], exc_info=failure)
            # probes (healthchecks every few seconds, Prometheus scrapes) would drown the log
            elif route in QUIET_ROUTES and int(status["code"]) < 400:
                log.debug("request", **fields)
            else:
                log.info("request", **fields)
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


class JsonContentTypeMiddleware:
    """Refuses a body on the JSON routes unless its Content-Type says JSON: 415.

    ``application/json`` (any parameters, such as a charset) or a structured ``+json`` type
    goes through; any other type, or a body without one (what ``curl -d`` sends without
    ``-H``), is refused before the body is read. A POST without a body and without a type
    goes on to the route, whose 422 says the body is missing. Added inside the access
    middleware: a caller without a key hears 401 first.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) in JSON_ROUTES:
            refusal = _content_type_refusal(scope.get("headers") or [])
            if refusal is not None:
                await send_json(send, 415, {"detail": refusal})
                return
        await self.app(scope, receive, send)


def _content_type_refusal(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why the request's body is not announced as JSON; None when it is (or there is none)."""
    content_type = next((v for k, v in headers if k == b"content-type"), None)
    if content_type is None:
        has_body = any(
            (k == b"content-length" and v.strip() not in (b"", b"0")) or k == b"transfer-encoding"
            for k, v in headers
        )
        return f"the body needs Content-Type: {JSON_MEDIA_TYPE}" if has_body else None
    media = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return None
    return f"Content-Type must be {JSON_MEDIA_TYPE}; got {media or 'nothing'!r}"


async def _too_large(send: Send, limit: int) -> None:
    """413 with the same ``{"detail": ...}`` body as every other error."""
    await send_json(send, 413, {"detail": f"request body larger than {limit} bytes"})


async def _internal_error(send: Send, request_id: str) -> None:
    """500 with the request id to quote (the log line has the same id); never a traceback."""
    await send_json(send, 500, {"detail": "internal error", "request_id": request_id})
