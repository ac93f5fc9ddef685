"""Real servers for tests on loopback ports: the predictor under uvicorn, and small HTTP
servers of the standard library standing where the stack calls out (webhooks, recorded answers)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` now (the system's pick), for a server started next
    or for an address that must refuse connections."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def server_process(
    command: Sequence[str],
    log_path: Path,
    ready: Callable[[], object],
    what: str,
    timeout: float = 120.0,
    **popen: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` as a server process, its output in ``log_path``; yields the process once
    ``ready()`` is truthy. A process that exits first fails the wait with its log's tail; it
    is terminated when the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **popen)

        def up() -> object:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            return ready()

        try:
            wait_for(up, timeout, what)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yields its base URL. ``host`` may be any address
    of 127.0.0.0/8 (Linux routes all of it to lo): several servers on one port, one each."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps http.server's per-request lines out of the test output."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` with http.server in a thread; yields its base URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
