"""Two pieces of plain ASGI the predictor's middlewares share (``serving.access``,
``serving.middleware``): the path as the routes know it, and a complete JSON answer sent
without a response object."""

from __future__ import annotations

import json

from starlette.types import Scope, Send


def route_path(scope: Scope) -> str:
    """The path the routes know, without the proxy's root path (``/api``) if it is there."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def send_json(
    send: Send, status: int, content: object, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """A complete JSON answer, from plain ASGI middleware (no response object needed)."""
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
