"""A steady load on the predictor: N requests a second over https, each with its own request id.

Open loop: request n is sent at ``start + n / rate`` whether or not earlier ones were answered,
as real clients do, so an outage shows as failed requests instead of as a slower client. Each
request carries ``X-Request-ID: <prefix>-<n>``, which the predictor stores with the row: the
ids answered 200 are the rows PostgreSQL must end up holding.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

MAX_LAG_SECONDS = 1.0
"""Behind schedule by more than this (a stalled event loop on a busy machine), the schedule
restarts from now instead of catching up in a burst that the proxy's rate limit would refuse."""


@dataclass(frozen=True)
class Answer:
    """One request: its id, when it was sent and answered (monotonic), and how it ended."""

    request_id: str
    sent: float
    done: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str = ""  # the exception's class name when there was no answer

    @property
    def outcome(self) -> str:
        return str(self.status) if self.status is not None else self.error


class Load:
    """``rate`` requests a second to ``POST /api/predict`` in a thread of its own until stopped.

    Use as a context manager; :meth:`answers` is a snapshot of what came back so far.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        prefix: str,
        body: dict[str, Any],
        rate: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        self.base_url, self.api_key, self.prefix = base_url, api_key, prefix
        self.body, self.rate, self.timeout = body, rate, timeout
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{prefix}", daemon=True)
        self._failure: BaseException | None = None

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        """Stop sending, wait for the requests in flight (each bounded by the timeout)."""
        self._stop.set()
        self._thread.join(self.timeout + 10)
        if self._thread.is_alive():
            raise AssertionError(f"the load {self.prefix} did not stop")
        if self._failure is not None:
            raise AssertionError(f"the load {self.prefix} broke: {self._failure!r}")
        return self.answers()

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def _run(self) -> None:
        try:
            asyncio.run(self._send_all())
        except BaseException as exc:  # reported by stop(), in the test's thread
            self._failure = exc

    async def _send_all(self) -> None:
        # a connection per request in flight, up to a timeout's worth: a request never waits
        # for a free connection, which would release the waiting ones in a burst that the
        # proxy's per-key limit answers 429 (the test module raises RLIMIT_NOFILE for them)
        limits = httpx.Limits(
            max_connections=int(self.rate * self.timeout) + 50, max_keepalive_connections=32
        )
        async with httpx.AsyncClient(
            base_url=self.base_url, verify=False, timeout=self.timeout, limits=limits
        ) as client:  # verify=False: CI's self-signed certificate
            in_flight: set[asyncio.Task[None]] = set()
            start, n, scheduled = time.monotonic(), 0, 0
            while not self._stop.is_set():
                delay = start + scheduled / self.rate - time.monotonic()
                if delay < -MAX_LAG_SECONDS:
                    start, scheduled, delay = time.monotonic(), 0, 0.0
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing of the schedule, not a wait for state
                task = asyncio.create_task(self._send(client, n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n, scheduled = n + 1, scheduled + 1
            await asyncio.gather(*in_flight)

    async def _send(self, client: httpx.AsyncClient, n: int) -> None:
        request_id = f"{self.prefix}-{n}"
        headers = {"X-API-Key": self.api_key, "X-Request-ID": request_id}
        sent = time.monotonic()
        try:
            response = await client.post("/api/predict", json=self.body, headers=headers)
            answer = Answer(request_id, sent, time.monotonic(), response.status_code)
        except httpx.HTTPError as exc:
            answer = Answer(request_id, sent, time.monotonic(), None, type(exc).__name__)
        with self._lock:
            self._answers.append(answer)


def by_outcome(answers: list[Answer]) -> dict[str, int]:
    """Answers counted by status code (or error name), most frequent first."""
    return dict(Counter(a.outcome for a in answers).most_common())


def answered_ok(answers: list[Answer]) -> set[str]:
    return {a.request_id for a in answers if a.status == 200}


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


def recovery_seconds(answers: list[Answer], since: float) -> float | None:
    """Seconds from ``since`` to the first request answered 200 that was sent after the last
    failed one; 0 when nothing failed, None when no 200 came after the last failure."""
    failures = failed(answers)
    if not failures:
        return 0.0
    last_failure = max(a.sent for a in failures)
    after = [a.done for a in answers if a.status == 200 and a.sent > last_failure]
    return round(min(after) - since, 1) if after else None


def ok_after(answers: list[Answer], moment: float) -> int:
    """200 answers to requests sent after ``moment``."""
    return sum(1 for a in answers if a.status == 200 and a.sent > moment)
