"""Serving throughput and latency, side by side on this machine, with the same champion.

In-process mode (the default) trains each of ``--candidates`` once (a temporary data directory
each, the built-in table) and measures, at batch size 1 (one row per request) and each
concurrency of ``--connections`` (1, 8, 32):

  - ``ours``: `mlops serve api` of this tree, one worker, prediction logging on (the default),
  - ``ours-nolog``: the same with ``MLOPS_PREDICTION_LOG_ENABLED=false`` (not run unless selected),
  - ``baseline`` (with ``--baseline DIR``): `mlops serve api` of another commit's ``src``
    (``git archive <commit> src | tar -x -C DIR``), logging on,
  - ``mlflow``: `mlflow models serve --env-manager local -w 1` (the baseline MLflow ships),
  - ``bentoml``: BentoML with adaptive batching (benchmarks/peers/bentoml_service.py),
  - ``mlserver``: MLServer's scikit-learn runtime with adaptive batching, one process,
  - the floor: the pipeline's own ``predict_proba`` in-process, per row of a 1-row call and of
    a 32-row call (what any server adds to; always measured),

with wrk (Debian package ``wrk``) as the load generator. Every server loads the same champion
(ours and mlflow from the registry, the peers from a joblib dump of the same pipeline) and must
answer the benchmark's row with the pipeline's own class and probabilities (within 1e-6) before
it is measured. BentoML and MLServer run from venvs of their own, made on first use from the
pinned files in benchmarks/peers/ under ``--peers-cache`` (pip's cache is reused).

Logging goes to the embedded database sink, or with ``--redis-url`` through the Redis stream as
in the compose stack (each server run XADDs to a stream of its own, deleted afterwards; no log
writer drains it during the run).

    python benchmarks/serve.py [--duration 15] [--connections 1,8,32] [--rounds 3]
                               [--candidates linear,random_forest] [--servers ours,mlflow,...]
                               [--baseline DIR] [--redis-url URL] [--peers-cache DIR]

Stack mode measures a RUNNING compose stack through nginx instead (nothing is started):

    python benchmarks/serve.py --stack http://127.0.0.1:8080/api/predict [--api-key KEY]
                               [--body FILE] [--connections 1,8,32] [--duration 15]

with each container's CPU during the load (``docker stats``, sampled all through it; run it
from the repository with the stack's COMPOSE_PROJECT_NAME in the environment, as for any
``docker compose`` command) and the log writer's CPU (the ``worker`` container) against the
predictor's (``api``).

Not a test: figures depend on the machine. Record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median
from typing import Any

import httpx
import psutil

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src"  # this tree's code, whatever is installed
PEERS = Path(__file__).resolve().parent / "peers"
# Server on core 0, load generator on core 1: two processes that would otherwise swap cores
# make the figures swing by +-15 % between identical runs on a 2-core machine.
PIN_SERVER = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
PIN_LOAD = ["taskset", "-c", "1"] if PIN_SERVER else []
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
wrk.body = [==[{body}]==]
"""
TOLERANCE = 1e-6  # probabilities of a server against the pipeline's own, for the same row
FLOOR_BATCH = 32  # rows of the floor's batched call
PEER_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "joblib")  # must match constraints
SERVER_NAMES = ("ours", "ours-nolog", "baseline", "mlflow", "bentoml", "mlserver")
DEFAULT_SERVERS = "ours,baseline,mlflow,bentoml,mlserver"  # baseline only with --baseline
PEER_SERVERS = ("bentoml", "mlserver")


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


def run_wrk(
    url: str,
    body: str,
    duration: int,
    connections: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
    pin: list[str] = PIN_LOAD,
) -> dict:
    script = workdir / "post.lua"
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    script.write_text(WRK_SCRIPT.format(body=body, headers=lines))
    out = subprocess.run(
        [
            *pin,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "30s",
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
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, flags=re.M))
    return {
        "rps": rps,
        "p50": to_ms(latency["50"]),
        "p99": to_ms(latency["99"]),
        # an answer that is not 2xx, or none at all (timeout, reset): both are failures
        "non_2xx": (int(errors.group(1)) if errors else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    }


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


# --- what each server answers, reduced to (class, probabilities in classes_ order | None) ------
Reading = tuple[str, list[float] | None]


def read_ours(answer: Any, classes: list[str]) -> Reading:
    probabilities = answer.get("probabilities")
    return str(answer["prediction"]), (
        [probabilities[c] for c in classes] if probabilities is not None else None
    )


def read_mlflow(answer: Any, classes: list[str]) -> Reading:
    return str(answer["predictions"][0]), None  # its pyfunc answers predict(), a class only


def read_bentoml(answer: Any, classes: list[str]) -> Reading:
    probabilities = answer[0]
    return classes[probabilities.index(max(probabilities))], probabilities


def read_mlserver(answer: Any, classes: list[str]) -> Reading:
    probabilities = answer["outputs"][0]["data"]
    return classes[probabilities.index(max(probabilities))], probabilities


@dataclass(frozen=True)
class Server:
    """One server under test: its command and environment (``{port}``, ``{port2}``,
    ``{port3}`` are filled with free ports at each start), its health and predict paths, its
    one-row body, and how to read its answer. ``source``: the ``src`` an ``mlops`` server
    imports; ``isolated``: a peer from its own venv (none of this project's environment)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: str
    path: str
    body: str
    read: Callable[[Any, list[str]], Reading]
    source: Path | None = None
    cwd: Path | None = None
    isolated: bool = False

    def command(self, ports: list[int]) -> list[str]:
        return [fill(arg, ports) for arg in self.argv]


def fill(text: str, ports: list[int]) -> str:
    for number, port in zip(("", "2", "3"), ports, strict=True):
        text = text.replace("{port" + number + "}", str(port))
    return text


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (mlflow, BentoML serve from
    children)."""
    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Reference:
    """The pipeline's own answer to the benchmark's row, and what each server answered."""

    classes: list[str]
    label: str
    probabilities: list[float]
    answers: dict[str, Reading] = field(default_factory=dict)

    def check(self, server: Server, answer: Any) -> None:
        """Stop unless ``server`` answered the row as the pipeline does: it would not be
        serving the same model, and its figures would compare nothing."""
        label, probabilities = server.read(answer, self.classes)
        self.answers[server.name] = (label, probabilities)
        if label != self.label:
            raise SystemExit(f"{server.name} answered class {label}, the pipeline {self.label}")
        if probabilities is not None:
            gap = max(abs(a - b) for a, b in zip(probabilities, self.probabilities, strict=True))
            if gap > TOLERANCE:
                raise SystemExit(
                    f"{server.name}'s probabilities {probabilities} differ from the "
                    f"pipeline's {self.probabilities} by {gap:.2e} (> {TOLERANCE})"
                )


def server_environment(server: Server, env: dict[str, str], args, ports: list[int]) -> dict:
    if server.isolated:  # the peer's venv only: not this project's src or virtualenv
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    else:
        base = dict(env)
    server_env = {**base, **{k: fill(v, ports) for k, v in server.env.items()}}
    if server.source is not None:
        server_env["PYTHONPATH"] = str(server.source)
    if args.redis_url and server.source is not None:
        stream = f"bench:predictions:{os.getpid()}:{ports[0]}"
        server_env.update(MLOPS_REDIS_URL=args.redis_url, MLOPS_PREDICTION_STREAM=stream)
    return server_env


def measure_server(
    server: Server, env: dict, args, workdir: Path, reference: Reference
) -> dict[int, dict]:
    """Start the server, check its answer, warm it up for 5 s, load it with wrk at each
    concurrency, stop it.

    Besides wrk's figures, the server's CPU time per answered request: on this 2-core machine
    throughput swings by +-15 % between identical runs, CPU per request far less, and for a
    CPU-bound single process the two measure the same cost.
    """
    ports = [free_port(), free_port(), free_port()]
    base = f"http://127.0.0.1:{ports[0]}"
    log = (workdir / f"{server.name}.log").open("a")
    server_env = server_environment(server, env, args, ports)
    process = subprocess.Popen(
        [*PIN_SERVER, *server.command(ports)],
        env=server_env,
        cwd=server.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    results = {}
    try:
        wait_healthy(base + server.health, process)
        response = httpx.post(
            base + server.path,
            content=server.body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        if response.status_code != 200:
            raise SystemExit(f"{server.name}: {response.status_code} {response.text[:300]}")
        reference.check(server, response.json())
        run_wrk(base + server.path, server.body, 5, max(args.connections), workdir)  # warm-up
        for connections in args.connections:
            before = cpu_seconds(process.pid)
            calls_before = batch_calls(base, server)
            result = run_wrk(base + server.path, server.body, args.duration, connections, workdir)
            answered = max(result["rps"] * args.duration, 1.0)
            result["cpu_ms"] = (cpu_seconds(process.pid) - before) * 1000 / answered
            calls_after = batch_calls(base, server)
            if calls_before and calls_after and calls_after[1] > calls_before[1]:
                rows, calls = (a - b for a, b in zip(calls_after, calls_before, strict=True))
                result["rows_per_call"] = rows / calls
            results[connections] = result
            print(f"   {server.name}, {connections} connections: {result}", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if args.redis_url and server.source is not None:
            import redis

            redis.Redis.from_url(args.redis_url).delete(server_env["MLOPS_PREDICTION_STREAM"])
    return results


def batch_calls(base: str, server: Server) -> tuple[float, float] | None:
    """Rows scored and model calls made so far by one of our servers (the micro-batcher's
    ``mlops_microbatch_rows`` histogram in /metrics); None for the others, or a tree without
    the batcher."""
    if server.source is None:
        return None
    try:
        text = httpx.get(base + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    found = dict(re.findall(r"^mlops_microbatch_rows_(sum|count) ([0-9.e+]+)$", text, re.M))
    if len(found) < 2:
        return None
    return float(found["sum"]), float(found["count"])


# --- the floor --------------------------------------------------------------------------------
FLOOR_CODE = """
import json, sys, time, joblib, pandas as pd
from sklearn.datasets import load_breast_cancer
pipeline = joblib.load(sys.argv[1])
features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
one, batch = features.iloc[:1], features.iloc[:{batch}]

def per_call(frame):
    calls = max(5, int(0.3 / max(timed(frame, 3) / 3, 1e-6)))  # about 0.3 s a repeat
    return min(timed(frame, calls) / calls for _ in range(5)) * 1000

def timed(frame, calls):
    start = time.perf_counter()
    for _ in range(calls):
        pipeline.predict_proba(frame)
    return time.perf_counter() - start

print(json.dumps({{
    "classes": [str(c) for c in pipeline.classes_],
    "probabilities": pipeline.predict_proba(one)[0].tolist(),
    "label": str(pipeline.predict(one)[0]),
    "one_ms": per_call(one),
    "batch_ms": per_call(batch),
}}))
"""


def floor(env: dict, pipeline: Path) -> dict:
    """The pipeline's own cost per call, in-process, pinned as the servers are: a 1-row call
    and a ``FLOOR_BATCH``-row call (best of 5 repeats each), and its answer to the first row."""
    out = subprocess.run(
        [*PIN_SERVER, sys.executable, "-c", FLOOR_CODE.format(batch=FLOOR_BATCH), str(pipeline)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- the peers' venvs ---------------------------------------------------------------------------
def pinned(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements / constraints file, names normalised."""
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", text, flags=re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def peer_venv(name: str, cache: Path) -> Path:
    """The venv of peer ``name`` (benchmarks/peers/NAME.txt), made on first use.

    Named by the hash of its requirement file, so an edit of the pins makes a new one; a
    marker written after pip succeeded tells a finished venv from an interrupted one.
    """
    requirements = PEERS / f"{name}.txt"
    text = requirements.read_text()
    ours = pinned((REPO / "constraints.txt").read_text())
    theirs = pinned(text)
    drift = {p: (theirs.get(p), ours.get(p)) for p in PEER_PACKAGES if theirs.get(p) != ours.get(p)}
    if drift:
        raise SystemExit(f"{requirements} pins differ from constraints.txt (peer, ours): {drift}")
    venv = cache / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    marker = venv / ".installed"
    if marker.exists():
        return venv
    print(f"-- making {name}'s venv in {venv} (once)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         "-r", str(requirements)],
        check=True,
    )  # fmt: skip
    marker.write_text(text)
    return venv


def mlserver_repository(workdir: Path, pipeline: Path) -> Path:
    """MLServer's model repository for the champion: one process (``parallel_workers`` 0,
    as ours), adaptive batching up to 64 rows or 5 ms. Ports come from the environment
    (MLSERVER_HTTP_PORT...), so one repository serves every start."""
    root = workdir / "mlserver"
    model = root / "champion"
    model.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps({"parallel_workers": 0}))
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "champion",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "max_batch_size": 64,
                "max_batch_time": 0.005,
                "parameters": {"uri": str(pipeline), "version": "v1"},
            }
        )
    )
    return root


def build_servers(
    args, selected: list[str], workdir: Path, pipeline: Path, row: dict[str, float]
) -> list[Server]:
    """The selected servers for one champion, ours first."""
    model_uri = "models:/mlops-classifier@champion"
    ours_body = json.dumps({"features": row})
    mlops = [str(BIN / "mlops"), "serve", "api", "--workers", "1", "--port", "{port}"]
    on, off = {"MLOPS_PREDICTION_LOG_ENABLED": "true"}, {"MLOPS_PREDICTION_LOG_ENABLED": "false"}
    servers: list[Server] = []
    if "ours" in selected:
        servers.append(Server("ours", mlops, on, "/ready", "/predict", ours_body, read_ours,
                              source=SOURCE))  # fmt: skip
    if "ours-nolog" in selected:
        servers.append(Server("ours-nolog", mlops, off, "/ready", "/predict", ours_body,
                              read_ours, source=SOURCE))  # fmt: skip
    if "baseline" in selected and args.baseline is not None:
        servers.append(Server("baseline", mlops, on, "/ready", "/predict", ours_body, read_ours,
                              source=args.baseline.resolve() / "src"))  # fmt: skip
    if "mlflow" in selected:
        servers.append(
            Server(
                "mlflow",
                [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                 "local", "-h", "127.0.0.1", "-w", "1", "-p", "{port}"],
                {},
                "/ping",
                "/invocations",
                json.dumps({"dataframe_split": {"columns": list(row),
                                                "data": [list(row.values())]}}),
                read_mlflow,
            )
        )  # fmt: skip
    if "bentoml" in selected:
        venv = peer_venv("bentoml", args.peers_cache)
        servers.append(
            Server(
                "bentoml",
                [str(venv / "bin" / "bentoml"), "serve", "bentoml_service:Classifier",
                 "--host", "127.0.0.1", "--port", "{port}"],
                {"PIPELINE": str(pipeline), "BENTOML_DO_NOT_TRACK": "true",
                 "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
                "/readyz",
                "/predict",
                json.dumps({"rows": [row]}),
                read_bentoml,
                cwd=PEERS,
                isolated=True,
            )
        )  # fmt: skip
    if "mlserver" in selected:
        venv = peer_venv("mlserver", args.peers_cache)
        repository = mlserver_repository(workdir, pipeline)
        inputs = [
            {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
            for name, value in row.items()
        ]
        servers.append(
            Server(
                "mlserver",
                [str(venv / "bin" / "mlserver"), "start", str(repository)],
                {"MLSERVER_HTTP_PORT": "{port}", "MLSERVER_GRPC_PORT": "{port2}",
                 "MLSERVER_METRICS_PORT": "{port3}", "MLSERVER_LOGGING_LEVEL": "WARNING",
                 "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
                "/v2/health/ready",
                "/v2/models/champion/infer",
                json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs,
                            "outputs": [{"name": "predict_proba"}]}),
                read_mlserver,
                isolated=True,
            )
        )  # fmt: skip
    return servers


def train(candidate: str, workdir: Path) -> tuple[dict[str, str], Path]:
    """A champion of ``candidate`` in a data directory of its own; its environment and the
    pipeline dumped with joblib (what the peers load)."""
    data_dir = workdir / "mlops-data"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_CANDIDATES": candidate,
        "MLOPS_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLOPS_LOG_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(SOURCE),
    }
    for name in ("MLOPS_REDIS_URL", "MLOPS_API_WORKERS", "MLOPS_API_KEYS", "MLOPS_API_KEYS_FILE"):
        env.pop(name, None)
    print(f"== training a {candidate} champion in {workdir}", flush=True)
    subprocess.run([str(BIN / "mlops"), "train"], env=env, check=True, capture_output=True)
    pipeline = workdir / "pipeline.joblib"
    dump = (
        "import sys, joblib, mlflow; mlflow.set_tracking_uri(sys.argv[1]); joblib.dump("
        "mlflow.sklearn.load_model('models:/mlops-classifier@champion'), sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", dump, env["MLOPS_TRACKING_URI"], str(pipeline)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return env, pipeline


def run_candidate(candidate: str, args, selected: list[str]) -> dict[str, Any]:
    """Train, measure the floor, then every selected server over the interleaved rounds."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-serve-{candidate}-"))
    env, pipeline = train(candidate, workdir)
    from sklearn.datasets import load_breast_cancer

    features = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    row = {k: float(v) for k, v in features.iloc[0].items()}
    cost = floor(env, pipeline)
    print(
        f"-- floor: 1-row call {cost['one_ms']:.3f} ms, {FLOOR_BATCH}-row call "
        f"{cost['batch_ms']:.3f} ms ({cost['batch_ms'] / FLOOR_BATCH:.4f} ms/row)",
        flush=True,
    )
    reference = Reference(cost["classes"], cost["label"], cost["probabilities"])
    servers = build_servers(args, selected, workdir, pipeline, row)
    rounds: dict[str, list[dict[int, dict]]] = {server.name: [] for server in servers}
    for number in range(1, args.rounds + 1):
        print(f"== {candidate}: round {number}/{args.rounds}", flush=True)
        # interleaved, and in reverse order every other round, so that neither drift in the
        # machine nor the position in a round favours one server
        for server in servers if number % 2 else reversed(servers):
            rounds[server.name].append(measure_server(server, env, args, workdir, reference))
    return {"rounds": rounds, "floor": cost, "reference": reference}


def medians(rounds: dict[str, list[dict[int, dict]]], connections: list[int]) -> dict:
    results: dict[str, dict[int, dict]] = {}
    for name, runs in rounds.items():
        results[name] = {}
        for c in connections:
            at = [run[c] for run in runs]
            results[name][c] = {key: median([x[key] for x in at]) for key in at[0]}
    return results


def report(candidate: str, measured: dict[str, Any], args) -> None:
    """The median round of each server at each concurrency, and the ratios issue #14's
    done-when asks for."""
    sink = f"Redis stream at {args.redis_url}" if args.redis_url else "embedded database sink"
    cost = measured["floor"]
    results = medians(measured["rounds"], args.connections)
    print(
        f"\n#### {candidate}: batch size 1, {args.duration}s each, {os.cpu_count()} cores, "
        f"logging to the {sink}; medians of {args.rounds} interleaved rounds"
    )
    answers = measured["reference"].answers
    if "ours" in answers:
        _, ours_p = answers["ours"]
        for name, (_, p) in answers.items():
            if p is not None and ours_p is not None and name != "ours":
                gap = max(abs(a - b) for a, b in zip(p, ours_p, strict=True))
                print(f"   {name} answers the row as ours: probabilities within {gap:.1e}")
    header = f"{'server':12} {'conns':>5} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}"
    print(f"{header} {'CPU ms/req':>11} {'non-2xx':>8}")
    for c in args.connections:
        for name, at in results.items():
            r = at[c]
            print(
                f"{name:12} {c:5d} {r['rps']:9.1f} {r['p50']:9.2f} {r['p99']:9.2f} "
                f"{r['cpu_ms']:11.3f} {r['non_2xx']:8.0f}"
            )
    one, per_row = cost["one_ms"], cost["batch_ms"] / FLOOR_BATCH
    print(f"{'floor 1 row':12} {1:5d} {1000 / one:9.1f} {one:9.3f}   (ms per 1-row call)")
    print(
        f"{'floor 32':12} {FLOOR_BATCH:5d} {1000 / per_row:9.1f} {cost['batch_ms']:9.3f}   "
        f"(ms per {FLOOR_BATCH}-row call: {per_row:.4f} ms/row)"
    )
    ratios(results, args.connections, one, per_row)


def ratios(results: dict, connections: list[int], one: float, per_row: float) -> None:
    top, low = max(connections), min(connections)
    ours = results.get("ours")
    print(f"\nratios (c{top} = the highest concurrency measured):")
    if ours is None:
        print("  (ours not measured)")
        return
    if "mlflow" in results:
        times = ours[top]["rps"] / results["mlflow"][top]["rps"]
        print(f"  throughput c{top}, ours / mlflow models serve: {times:.2f}x")
    peers = {n: results[n][top] for n in PEER_SERVERS if n in results}
    if peers:
        best = max(peers, key=lambda n: peers[n]["rps"])
        r = ours[top]
        print(
            f"  throughput c{top}, ours / best peer ({best}): {r['rps'] / peers[best]['rps']:.2f}x"
        )
        print(
            f"  p99 c{top}: ours {r['p99']:.1f} ms vs {best} {peers[best]['p99']:.1f} ms "
            f"({r['p99'] / peers[best]['p99']:.2f}x)"
        )
    if "baseline" in results:
        a, b = ours[low], results["baseline"][low]
        print(
            f"  p50 c{low}: ours {a['p50']:.2f} ms vs baseline {b['p50']:.2f} ms "
            f"({a['p50'] - b['p50']:+.2f} ms); throughput {(a['rps'] / b['rps'] - 1) * 100:+.1f}%"
        )
    if "ours-nolog" in results:
        a, b = ours[top], results["ours-nolog"][top]
        print(f"  CPU per request c{top}, logging on / off: {a['cpu_ms'] / b['cpu_ms']:.2f}x")
    for c in connections:
        cpu = ours[c]["cpu_ms"]
        print(
            f"  CPU per request c{c}: ours {cpu:.3f} ms = {cpu / one:.2f}x the floor's 1-row "
            f"call, {cpu / per_row:.1f}x its per-row cost in a {FLOOR_BATCH}-row call"
        )
        if "rows_per_call" in ours[c]:
            size = ours[c]["rows_per_call"]
            # the floor's per-row cost at the batch size reached: the call's cost is nearly
            # fixed, so interpolate between the 1-row and the 32-row call
            call = one + (per_row * FLOOR_BATCH - one) * (min(size, FLOOR_BATCH) - 1) / (
                FLOOR_BATCH - 1
            )
            print(
                f"    batches at c{c}: {size:.1f} rows per model call on average; the floor's "
                f"per-row cost there {call / size:.4f} ms, ours {cpu / (call / size):.1f}x it"
            )


# --- stack mode -----------------------------------------------------------------------------
EXAMPLE = REPO / "examples" / "predict.json"
TYPED_ZERO = {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False}


def stack_body(url: str, headers: dict[str, str], body_file: Path | None) -> str:
    """The /predict body: ``--body FILE``; else examples/predict.json when its columns are the
    served model's (GET /model lists them); else those columns with a zero of each type."""
    if body_file is not None:
        return json.dumps(json.loads(body_file.read_text()))
    model = httpx.get(re.sub(r"/predict$", "/model", url), headers=headers, timeout=30)
    model.raise_for_status()
    features = model.json()["features"]
    example = json.loads(EXAMPLE.read_text())
    if set(example["features"]) == {f["name"] for f in features}:
        return json.dumps(example)
    return json.dumps({"features": {f["name"]: TYPED_ZERO.get(f["type"], "") for f in features}})


def stack_containers() -> dict[str, str]:
    """The running stack's containers: name -> compose service."""
    from scale import compose

    out = compose("ps", "--format", "{{.Name}}\t{{.Service}}")
    rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
    return {name: service for name, service in rows}


def sample_cpu(containers: list[str], stop: threading.Event, into: list[dict]) -> None:
    """``docker stats`` samples (each over about a second) until ``stop``: the CPU of each
    container all through the load, not one moment of it."""
    from scale import cpu_percent

    while not stop.is_set():
        into.append(cpu_percent(containers))


def run_stack(args) -> None:
    """Load a running stack through nginx at each concurrency; throughput, latency, and the
    CPU of each container during the load."""
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    body = stack_body(args.stack, headers, args.body)
    check = httpx.post(
        args.stack, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    if check.status_code != 200:
        raise SystemExit(f"{args.stack}: {check.status_code} {check.text[:300]}")
    containers = stack_containers()
    if not containers:
        raise SystemExit("no containers: run from the repository with COMPOSE_PROJECT_NAME set")
    workdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    print(f"== {args.stack}: {len(containers)} containers; idle CPU for 6 s", flush=True)
    idle = idle_cpu(list(containers), containers, seconds=6)
    print(f"== warm-up 5 s; idle CPU %: {idle}", flush=True)
    run_wrk(args.stack, body, 5, max(args.connections), workdir, headers, pin=[])
    rows = []
    for connections in args.connections:
        samples: list[dict] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_cpu, args=(list(containers), stop, samples))
        load_average = os.getloadavg()[0]
        sampler.start()
        result = run_wrk(args.stack, body, args.duration, connections, workdir, headers, pin=[])
        stop.set()
        sampler.join(timeout=60)
        cpu = by_service(samples, containers)
        rows.append((connections, result, cpu, len(samples), load_average))
        print(f"   {connections} connections: {result}, {len(samples)} CPU samples", flush=True)
    stack_report(args, rows, idle)


def by_service(samples: list[dict[str, float]], containers: dict[str, str]) -> dict[str, float]:
    """Each service's CPU % (its containers summed), the mean over the samples."""
    cpu: dict[str, float] = {}
    for name, service in containers.items():
        values = [sample[name] for sample in samples if name in sample]
        cpu[service] = cpu.get(service, 0.0) + (mean(values) if values else 0.0)
    return cpu


def idle_cpu(names: list[str], containers: dict[str, str], seconds: float) -> dict[str, float]:
    """Each service's CPU % with no load: what the worker's flow runner, the dashboard and the
    servers' own loops cost anyway, so the log writer's share can be read above it."""
    samples: list[dict] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_cpu, args=(names, stop, samples))
    sampler.start()
    stop.wait(seconds)  # the length of the idle window, not a wait for a state
    stop.set()
    sampler.join(timeout=60)
    return {k: round(v, 1) for k, v in by_service(samples, containers).items()}


def stack_report(args, rows: list, idle: dict[str, float]) -> None:
    print(
        f"\n#### through nginx: {args.stack}, {args.duration}s each, {os.cpu_count()} cores "
        "(wrk on the same machine, not pinned); CPU % of one core, mean of docker stats samples"
    )
    busiest = rows[-1][2]  # the services, busiest at the highest concurrency first
    services = sorted(busiest, key=lambda service: -busiest[service])
    print(f"{'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>9} {'non-2xx':>8}  CPU % (ms/req)")
    for connections, r, cpu, _, load in rows:
        per = ", ".join(
            f"{s} {cpu[s]:.0f} ({cpu[s] * 10 / max(r['rps'], 1e-9):.2f})"
            for s in services
            if cpu.get(s, 0) >= 0.5
        )
        print(
            f"{connections:5d} {r['rps']:8.1f} {r['p50']:8.2f} {r['p99']:9.2f} "
            f"{r['non_2xx']:8.0f}  {per}  [load avg before {load:.1f}]"
        )
    print()
    print("log writer CPU / predictor CPU (the writer runs in `worker`, the predictor in `api`):")
    for connections, _r, cpu, _, _ in rows:
        api, worker = cpu.get("api", 0.0), cpu.get("worker", 0.0)
        # above idle: the worker's flow runner polls Prefect whether or not rows arrive
        above = worker - idle.get("worker", 0.0)
        share = f"{worker / api:.2f}, above idle {above / api:.2f}" if api else "n/a"
        print(f"  c{connections}: worker / api = {share}")


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
    parser.add_argument(
        "--candidates",
        "--candidate",
        default="linear",
        help="models to train and serve, comma-separated (linear, random_forest), each once",
    )
    parser.add_argument(
        "--servers",
        default=DEFAULT_SERVERS,
        help=f"servers to measure, comma-separated, of {', '.join(SERVER_NAMES)} (the floor "
        "is always measured)",
    )
    parser.add_argument(
        "--peers-cache",
        type=Path,
        default=Path.home() / ".cache" / "mlops-stack" / "bench-peers",
        help="where the peers' venvs are made (once per requirement file's content)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per server; the median round is reported",
    )
    parser.add_argument("--stack", metavar="URL", help="measure a running stack's /api/predict")
    parser.add_argument("--api-key", help="stack mode: X-API-Key to send (the prod stack)")
    parser.add_argument("--body", type=Path, help="stack mode: the /predict body (JSON file)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    if args.stack:
        run_stack(args)
        return
    selected = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(SERVER_NAMES))
    if unknown:
        raise SystemExit(f"unknown servers {unknown}; choose from {SERVER_NAMES}")
    candidates = [name.strip() for name in args.candidates.split(",") if name.strip()]
    measured = {candidate: run_candidate(candidate, args, selected) for candidate in candidates}
    for candidate, figures in measured.items():
        report(candidate, figures, args)


if __name__ == "__main__":
    main()
