"""Serving throughput and latency, side by side on this machine, with the same champion.

Measures, at batch size 1 and each concurrency of ``--connections``:
  - the raw in-process ``predict_proba`` time per row (the floor any server adds to),
  - `mlops serve api` of this tree with prediction logging on (the default) and off,
  - with ``--baseline DIR``: `mlops serve api` of another commit's ``src`` (e.g. the parent, to
    measure what a change to the request path costs: ``git archive <commit> src | tar -x -C DIR``),
  - `mlflow models serve --env-manager local` (the baseline MLflow ships; ``--no-mlflow`` skips),
with wrk (Debian package ``wrk``) as the load generator, and prints the ratios.

Logging goes to the embedded database sink, or with ``--redis-url`` through the Redis stream as
in the compose stack (each server run XADDs to a stream of its own, deleted afterwards; no log
writer drains it during the run).

    python benchmarks/serve.py [--duration 15] [--connections 1,8,32] [--redis-url URL]
                               [--baseline DIR] [--candidate random_forest]

Not a test: figures depend on the machine. Record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import httpx
import psutil

BIN = Path(sys.executable).parent
SOURCE = Path(__file__).resolve().parents[1] / "src"  # this tree's code, whatever is installed
# Server on core 0, load generator on core 1: two processes that would otherwise swap cores
# make the figures swing by +-15 % between identical runs on a 2-core machine.
PIN_SERVER = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
PIN_LOAD = ["taskset", "-c", "1"] if PIN_SERVER else []
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not healthy after {timeout}s")


def run_wrk(url: str, body: str, duration: int, connections: int, workdir: Path) -> dict:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    out = subprocess.run(
        [
            *PIN_LOAD,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, flags=re.M))
    return {
        "rps": rps,
        "p50": to_ms(latency["50"]),
        "p99": to_ms(latency["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@dataclass(frozen=True)
class Server:
    """One server under test: its command (``mlops`` or ``mlflow`` arguments) and its request;
    ``source`` is the ``src`` directory an ``mlops`` server imports."""

    name: str
    args: list[str]
    env: dict[str, str]
    health: str
    path: str
    body: str
    source: Path | None = None

    def command(self, port: int) -> list[str]:
        program = "mlops" if self.args[0] == "serve" else "mlflow"
        return [str(BIN / program), *self.args, "--port" if program == "mlops" else "-p", str(port)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (mlflow serves from a child)."""
    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def measure_server(server: Server, env: dict, args, workdir: Path) -> dict[int, dict]:
    """Start the server, warm it up for 5 s, load it with wrk at each concurrency, stop it.

    Besides wrk's figures, the server's CPU time per answered request: on this 2-core machine
    throughput swings by +-15 % between identical runs, CPU per request far less, and for a
    CPU-bound single worker the two measure the same cost.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (workdir / f"{server.name.replace(' ', '_')}.log").open("a")
    server_env = {**env, **server.env}
    if server.source is not None:
        server_env["PYTHONPATH"] = str(server.source)
    stream = f"bench:predictions:{os.getpid()}:{port}"
    if args.redis_url:
        server_env.update(MLOPS_REDIS_URL=args.redis_url, MLOPS_PREDICTION_STREAM=stream)
    process = subprocess.Popen(
        [*PIN_SERVER, *server.command(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    results = {}
    try:
        wait_healthy(base + server.health, process)
        run_wrk(base + server.path, server.body, 5, max(args.connections), workdir)  # warm-up
        for connections in args.connections:
            before = cpu_seconds(process.pid)
            result = run_wrk(base + server.path, server.body, args.duration, connections, workdir)
            answered = result["rps"] * args.duration
            result["cpu_ms"] = (cpu_seconds(process.pid) - before) * 1000 / answered
            results[connections] = result
            print(f"   {server.name}, {connections} connections: {result}", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if args.redis_url:
            import redis

            redis.Redis.from_url(args.redis_url).delete(stream)
    return results


def raw_predict_ms(env: dict, row: dict, model_uri: str) -> float:
    code = f"""
import json, time, mlflow, pandas as pd
mlflow.set_tracking_uri({env["MLOPS_TRACKING_URI"]!r})
model = mlflow.sklearn.load_model({model_uri!r})
frame = pd.DataFrame([json.loads({json.dumps(json.dumps(row))})])
model.predict_proba(frame)
n = 500
start = time.perf_counter()
for _ in range(n):
    model.predict_proba(frame)
print((time.perf_counter() - start) / n * 1000)
"""
    out = subprocess.run(
        [*PIN_SERVER, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per server")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32],
        help="concurrent connections, comma-separated: each is measured in every round",
    )
    parser.add_argument(
        "--redis-url", help="log through a Redis stream on this server (as the compose stack)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another commit's src/, served side by side as 'baseline'",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    parser.add_argument(
        "--candidate",
        default="logistic_regression",
        help="model to train and serve (random_forest: model time dominates)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per server; the median round is reported",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    data_dir = workdir / "mlops-data"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_CANDIDATES": args.candidate,
        "MLOPS_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLOPS_LOG_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
    }
    env.pop("MLOPS_REDIS_URL", None)
    env["PYTHONPATH"] = str(SOURCE)
    print(f"== training a {args.candidate} champion in {workdir}", flush=True)
    subprocess.run([str(BIN / "mlops"), "train"], env=env, check=True, capture_output=True)
    model_uri = "models:/mlops-classifier@champion"

    from sklearn.datasets import load_breast_cancer

    features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    row = {k: float(v) for k, v in features.iloc[0].items()}
    ours_body = json.dumps({"features": row})
    mlflow_body = json.dumps(
        {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
    )
    raw = raw_predict_ms(env, row, model_uri)
    print(f"-- raw in-process predict_proba: {raw:.3f} ms/row", flush=True)

    ours = "mlops serve api (logging on)"
    servers = [
        Server(ours, ["serve", "api"], {"MLOPS_LOG_PREDICTIONS": "true"}, "/ready", "/predict",
               ours_body, SOURCE),
        Server("mlops serve api (logging off)", ["serve", "api"],
               {"MLOPS_LOG_PREDICTIONS": "false"}, "/ready", "/predict", ours_body, SOURCE),
    ]  # fmt: skip
    if args.baseline is not None:
        servers.append(
            Server("baseline (logging on)", ["serve", "api"], {"MLOPS_LOG_PREDICTIONS": "true"},
                   "/ready", "/predict", ours_body, args.baseline.resolve() / "src")
        )  # fmt: skip
    if not args.no_mlflow:
        servers.append(
            Server(
                "mlflow models serve",
                ["models", "serve", "-m", model_uri, "--env-manager", "local"]
                + ["-h", "127.0.0.1", "-w", "1"],
                {},
                "/ping",
                "/invocations",
                mlflow_body,
            )
        )
    rounds: dict[str, list[dict[int, dict]]] = {server.name: [] for server in servers}
    for number in range(1, args.rounds + 1):
        print(f"== round {number}/{args.rounds}", flush=True)
        # interleaved, and in reverse order every other round, so that neither drift in the
        # machine nor the position in a round favours one server
        for server in servers if number % 2 else reversed(servers):
            rounds[server.name].append(measure_server(server, env, args, workdir))
    report(rounds, args, raw)


def report(rounds: dict[str, list[dict[int, dict]]], args, raw: float) -> None:
    """The median round of each server at each concurrency, and the ratios."""
    sink = f"Redis stream at {args.redis_url}" if args.redis_url else "embedded database sink"
    print(
        f"\nbatch size 1, {args.duration}s each, {args.candidate}, {os.cpu_count()} cores, "
        f"logging to the {sink}; medians of {args.rounds} interleaved rounds"
    )
    header = (
        f"{'server':34} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}"
    )
    print(f"{header} {'non-2xx':>8}")
    results: dict[str, dict[int, dict]] = {}
    for name, runs in rounds.items():
        results[name] = {}
        for connections in args.connections:
            at = [run[connections] for run in runs]
            results[name][connections] = r = {key: median([x[key] for x in at]) for key in at[0]}
            print(
                f"{name:34} {connections:5d} {r['rps']:9.1f} {r['p50']:8.2f} {r['p99']:8.2f} "
                f"{r['cpu_ms']:11.3f} {r['non_2xx']:8.0f}"
            )
    print(f"{'raw predict_proba (in-process)':34} {1:5d} {1000 / raw:9.1f} {raw:8.2f}")
    on, off = results["mlops serve api (logging on)"], results["mlops serve api (logging off)"]
    for connections in args.connections:
        print(f"\n{connections} connections:")
        ratio(on, off, connections, "logging on vs off")
        if "baseline (logging on)" in results:
            ratio(on, results["baseline (logging on)"], connections, "this tree vs baseline")
        if "mlflow models serve" in results:
            mlflow = results["mlflow models serve"][connections]
            times = on[connections]["rps"] / mlflow["rps"]
            print(f"  throughput, ours / mlflow models serve: {times:.2f}x")


def ratio(a: dict[int, dict], b: dict[int, dict], connections: int, what: str) -> None:
    x, y = a[connections], b[connections]
    throughput, cpu = (x["rps"] / y["rps"] - 1) * 100, (x["cpu_ms"] / y["cpu_ms"] - 1) * 100
    print(
        f"  {what}: throughput {throughput:+5.1f}%, p50 {x['p50'] - y['p50']:+.2f} ms, "
        f"CPU per request {cpu:+5.1f}%"
    )


if __name__ == "__main__":
    main()
