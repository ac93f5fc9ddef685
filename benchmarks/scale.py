"""Predictions per second through nginx with N predictor replicas, on a running compose stack.

    python benchmarks/scale.py [--url http://127.0.0.1:8080] [--replicas 3,1] [--duration 15]
                               [--warmup 5] [--clients 8] [--body examples/predict.json]

For each count in ``--replicas``, in order: ``docker compose up -d --wait --no-deps
--no-recreate --scale api=N api`` (only the predictor is touched: a scaled worker stays as it
is), a warm-up, then ``--clients`` clients in a closed loop (each sends its next request when
the last one is answered) for ``--duration`` seconds, every request with an X-Request-ID of its
own. Prints requests a second, p50/p99 latency, the answers by status, the CPU of the api
containers, nginx and the rest of the stack (``docker stats``, sampled in the middle of the
run; 100 % is one core) and this client's own. The api is left at the last count. Run it from
the repository with the stack's COMPOSE_PROJECT_NAME (and COMPOSE_FILE) in the environment, as
for any ``docker compose`` command.

The load generator runs on the same machine and takes CPU from the same cores: on CI's two
cores it is one of the things the replicas share. Exits 1 unless every answer was 200.
infrastructure/ci/compose-e2e.sh runs it on the scaled table stack; tests/e2e_scale drives its
load with :func:`drive`. Not a test: the figures depend on the machine (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Answer:
    """One request: its id, how it ended, the model version it named, when and how long."""

    request_id: str
    status: int | None  # None: no HTTP answer (connection error, timeout)
    version: str | None  # the version a 200 named (``model.version``)
    sent: float  # monotonic
    seconds: float
    error: str = ""

    @property
    def outcome(self) -> str:
        return str(self.status) if self.status is not None else self.error


def drive(
    base_url: str,
    body: dict[str, Any],
    *,
    clients: int,
    prefix: str,
    requests: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    into: list[Answer] | None = None,
    timeout: float = 30.0,
) -> list[Answer]:
    """``clients`` concurrent clients POSTing ``body`` to /api/predict in a closed loop until
    ``requests`` were sent, ``seconds`` passed or ``stop`` is set; every answer.

    Request n carries ``X-Request-ID: <prefix>-<n>``: the predictor logs it and stores it with
    the row, so each answer can be found in a replica's log and in PostgreSQL. ``into``, when
    given, gets each answer as it comes (another thread can watch a load in progress).
    """
    if requests is None and seconds is None and stop is None:
        raise ValueError("drive needs requests, seconds or stop to end")
    ids = (
        f"{prefix}-{n}" for n in (range(requests) if requests is not None else itertools.count())
    )
    deadline = time.monotonic() + seconds if seconds is not None else None

    def more() -> bool:
        if stop is not None and stop.is_set():
            return False
        return deadline is None or time.monotonic() < deadline

    answers = [] if into is None else into
    asyncio.run(_drive(base_url, body, clients, ids, more, timeout, answers))
    return answers


async def _drive(
    base_url: str,
    body: dict[str, Any],
    clients: int,
    ids: Iterator[str],
    more: Callable[[], bool],
    timeout: float,
    answers: list[Answer],
) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:

        async def one_client() -> None:
            while more():
                request_id = next(ids, None)  # one event loop: no two clients take the same id
                if request_id is None:
                    return
                answers.append(await _send(client, body, request_id))

        await asyncio.gather(*(one_client() for _ in range(clients)))


async def _send(client: httpx.AsyncClient, body: dict[str, Any], request_id: str) -> Answer:
    sent = time.monotonic()
    try:
        response = await client.post(
            "/api/predict", json=body, headers={"X-Request-ID": request_id}
        )
    except httpx.HTTPError as exc:
        return Answer(request_id, None, None, sent, time.monotonic() - sent, type(exc).__name__)
    elapsed = time.monotonic() - sent
    version = response.json()["model"]["version"] if response.status_code == 200 else None
    return Answer(request_id, response.status_code, version, sent, elapsed)


def by_outcome(answers: list[Answer]) -> dict[str, int]:
    """Answers counted by status code (or error name), most frequent first."""
    return dict(Counter(a.outcome for a in answers).most_common())


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def compose(*args: str, timeout: float = 600) -> str:
    """``docker compose ARGS`` in the repository (the caller's COMPOSE_* environment); stdout."""
    done = subprocess.run(
        ["docker", "compose", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"docker compose {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def scale_api(replicas: int) -> list[str]:
    """Run ``replicas`` api containers, healthy, touching no other service; their ids."""
    compose(
        "up", "-d", "--wait", "--wait-timeout", "300", "--no-deps", "--no-recreate",
        "--scale", f"api={replicas}", "api",
    )  # fmt: skip
    ids = compose("ps", "-q", "api").split()
    if len(ids) != replicas:
        raise SystemExit(f"{len(ids)} api containers running, {replicas} asked for")
    return ids


def cpu_percent(containers: list[str]) -> dict[str, float]:
    """Each container's CPU now (``docker stats``: 100 % is one core), by container name."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.CPUPerc}}", *containers],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
    return {name: float(cpu.rstrip("%")) for name, cpu in rows}


@dataclass(frozen=True)
class Figures:
    """One measured run: what the docs quote."""

    replicas: int
    clients: int
    seconds: float
    answers: dict[str, int]
    per_second: float
    p50_ms: float
    p99_ms: float
    api_cpu: dict[str, float]  # container name -> % of one core, sampled mid-run
    nginx_cpu: float
    rest_cpu: dict[str, float]  # the stack's other containers, busiest first
    client_cpu: float  # this load generator's own process, over the run
    load_average: float  # the machine's, one minute, before the run: was it busy already?

    def line(self) -> str:
        cpu = " + ".join(f"{v:.0f}" for v in self.api_cpu.values())
        rest = ", ".join(f"{n} {v:.0f}" for n, v in list(self.rest_cpu.items())[:3])
        return (
            f"api={self.replicas}: {self.per_second:.0f} req/s, p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms ({self.clients} clients, {self.seconds:.0f} s, answers "
            f"{self.answers}); CPU % (100 = one core): api {cpu} = "
            f"{sum(self.api_cpu.values()):.0f}, nginx {self.nginx_cpu:.0f}, the rest "
            f"{sum(self.rest_cpu.values()):.0f} ({rest}), this client {self.client_cpu:.0f}; "
            f"load average before {self.load_average:.1f} on {os.cpu_count()} cores"
        )


def measure(
    base_url: str, body: dict[str, Any], replicas: int, clients: int, duration: float, warmup: float
) -> tuple[Figures, list[Answer]]:
    """Scale the api to ``replicas``, warm up, measure; the figures and every answer."""
    api = set(_names(scale_api(replicas)))
    stack = compose("ps", "-q").split()
    nginx = set(_names(compose("ps", "-q", "nginx").split()))
    tag = f"bench-{int(time.time())}-{replicas}"
    warm = drive(base_url, body, clients=clients, prefix=f"{tag}-warm", seconds=warmup)
    sampled: dict[str, float] = {}

    def sample() -> None:  # mid-run, while the load is steady
        time.sleep(duration / 2)  # the moment to sample at, not a wait for a state
        sampled.update(cpu_percent(stack))

    load_average = os.getloadavg()[0]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu_started = time.monotonic(), time.process_time()
    answers = drive(base_url, body, clients=clients, prefix=tag, seconds=duration)
    elapsed, client_cpu = time.monotonic() - started, time.process_time() - cpu_started
    sampler.join(timeout=60)
    latencies = [a.seconds for a in answers if a.status == 200] or [0.0]
    rest = {n: v for n, v in sampled.items() if n not in api | nginx}
    figures = Figures(
        replicas=replicas,
        clients=clients,
        seconds=elapsed,
        answers=by_outcome(answers),
        per_second=len(answers) / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        api_cpu={n: v for n, v in sorted(sampled.items()) if n in api},
        nginx_cpu=sum(v for n, v in sampled.items() if n in nginx),
        rest_cpu=dict(sorted(rest.items(), key=lambda item: -item[1])),
        client_cpu=100 * client_cpu / elapsed,
        load_average=load_average,
    )
    return figures, warm + answers


def _names(containers: list[str]) -> list[str]:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.Name}}", *containers],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [line.strip().lstrip("/") for line in out.splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="nginx's address")
    parser.add_argument("--replicas", default="3,1", help="api replica counts, in order")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured each")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--body", type=Path, default=REPO / "examples" / "predict.json",
        help="the /api/predict body (JSON file) the served model accepts",
    )  # fmt: skip
    args = parser.parse_args()
    body = json.loads(args.body.read_text())
    counts = [int(n) for n in args.replicas.split(",")]
    results: list[Figures] = []
    failed = 0
    for replicas in counts:
        figures, answers = measure(
            args.url.rstrip("/"), body, replicas, args.clients, args.duration, args.warmup
        )
        failed += sum(1 for a in answers if a.status != 200)
        results.append(figures)
        print(figures.line(), flush=True)
    if len(results) > 1:
        base = next((f for f in results if f.replicas == 1), results[-1])
        ratios = ", ".join(
            f"api={f.replicas} {f.per_second / base.per_second:.2f}x" for f in results
        )
        print(f"throughput relative to api={base.replicas}: {ratios}")
    if failed:
        print(f"{failed} answers were not 200 (warm-up included)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
