"""The prediction log writer's cost: Redis stream -> PostgreSQL, CPU per 1,000 rows.

XADDs ``--rows`` records shaped like the predictor's (30 numeric features, a class and its
probabilities, exactly what ``PredictionRecord.to_json`` puts on the stream) to a stream of its
own, then times a ``StreamWriter`` draining them (XREADGROUP, parse or not, commit, XACK/XDEL) in
a process of its own pinned to one core (``taskset``): rows/s, the writer's CPU (``process_time``
of that process, start-up excluded) and the PostgreSQL server's CPU (psutil: every process named
``postgres``, background work included) per 1,000 rows. With ``--baseline DIR`` another commit's
``src`` (``git archive <commit> src | tar -x -C DIR``) drains the same records, interleaved
round by round, and the ratios are printed.

    . /tmp/mlops-test-services/env   # PostgreSQL and Redis of infrastructure/ci/services.sh
    PYTHONPATH=src python benchmarks/logwrite.py [--rows 20000] [--rounds 3] [--baseline DIR]

Uses its own database (``logwrite_bench``, dropped at the end) and stream. Not a test: figures
depend on the machine. Record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import redis
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mlops_stack.monitoring_db.records import PredictionRecord

SOURCE = Path(__file__).resolve().parents[1] / "src"  # this tree's code, whatever is installed
DATABASE = "logwrite_bench"
FEATURES = 30

# Runs in the measured process: the writer of whichever src is first on PYTHONPATH.
DRAIN = """
import json, sys, time
import psutil
from mlops_stack.logs import configure_logging
from mlops_stack.prediction_log.stream import StreamWriter
from mlops_stack.settings import Settings

def server_cpu():
    # CPU seconds so far of each PostgreSQL process, read while this writer's backend lives
    found = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if process.info["name"] == "postgres" and times is not None:
            found[process.pid] = times.user + times.system
    return found

settings = Settings()
configure_logging(settings.log_level, settings.log_json)  # as the worker does
writer = StreamWriter(settings, consumer="bench")
writer.store.database.ensure_schema()
expect, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
server = server_cpu()
print("ready", flush=True)
rows, batches, cpu, wall = 0, 0, time.process_time(), time.perf_counter()
if expect:  # live: the records arrive at the producer's pace, as from the predictor
    while rows < expect and time.monotonic() < deadline:
        handled = writer.run_once(block_ms=1000)
        rows, batches = rows + handled, batches + bool(handled)
else:  # a full stream: drain it
    while handled := writer.run_once(block_ms=1):  # 0: the stream is empty (or the DB down)
        rows, batches = rows + handled, batches + 1
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
spent = sum(seconds - server.get(pid, 0.0) for pid, seconds in server_cpu().items())
writer.close()
figures = {"rows": rows, "batches": batches, "cpu": cpu, "wall": wall, "server": spent}
print("RESULT", json.dumps(figures))
"""


@dataclass(frozen=True)
class Run:
    rows: int
    batches: int
    wall: float
    client_cpu: float
    server_cpu: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall

    def per_1000(self, seconds: float) -> float:
        """Milliseconds of CPU per 1,000 rows."""
        return seconds * 1000 / self.rows * 1000


def payloads(count: int, rng: random.Random) -> list[str]:
    """Records as the predictor XADDs them: one per request, row 0."""
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        features = {f"feature_{i}": round(rng.gauss(10, 5), 4) for i in range(FEATURES)}
        yes = rng.random()
        record = PredictionRecord(
            request_id=uuid.uuid4().hex,
            row=0,
            created_at=now,
            model_name="breast_cancer",
            model_version="3",
            features=features,
            prediction=int(yes > 0.5),
            probabilities={"0": 1 - yes, "1": yes},
            latency_ms=rng.uniform(0.5, 3),
        )
        out.append(record.to_json())
    return out


def recreate_database(admin_url: URL) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        connection.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    engine.dispose()


def drop_database(admin_url: URL) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    engine.dispose()


def stored_rows(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM predictions").scalar_one()
        connection.exec_driver_sql("TRUNCATE predictions")  # the next run starts empty
    engine.dispose()
    return int(count)


def drain(
    source: Path, env: dict[str, str], pin: list[str], produce: Callable[[], int] | None
) -> dict[str, float]:
    """Run the writer of ``source`` until it wrote every record: rows, batches, its CPU and
    wall seconds, the PostgreSQL processes' CPU seconds meanwhile (read before its backend
    exits). With ``produce``, the records are XADDed once the writer waits for them."""
    expect = 0 if produce is None else int(env["BENCH_ROWS"])
    command = [*pin, sys.executable, "-c", DRAIN, str(expect), "600"]
    with subprocess.Popen(
        command,
        env={**env, "PYTHONPATH": str(source)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:  # log lines may come first
            if line.strip() == "ready":
                break
        if produce is not None:
            produce()
        out, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"the writer of {source} failed:\n{err[-3000:]}")
    [result] = [line for line in out.splitlines() if line.startswith("RESULT ")]
    figures: dict[str, float] = json.loads(result.removeprefix("RESULT "))
    return figures


def xadd_all(client: redis.Redis, stream: str, records: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.xadd(stream, {"record": record})
    pipe.execute()
    return len(records)


def xadd_at(client: redis.Redis, stream: str, records: list[str], rate: float) -> int:
    """XADD one record at a time, ``rate`` a second, as a predictor answering requests does."""
    start = time.perf_counter()
    for i, record in enumerate(records):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client.xadd(stream, {"record": record})
    return len(records)


def measure(
    source: Path,
    records: list[str],
    client: redis.Redis,
    env: dict[str, str],
    pin: list[str],
    rate: float,
) -> Run:
    stream = env["MLOPS_PREDICTION_STREAM"]
    client.delete(stream, f"{stream}:dead")
    produce = None
    if rate:
        produce = functools.partial(xadd_at, client, stream, records, rate)
    else:
        xadd_all(client, stream, records)
    figures = drain(source, {**env, "BENCH_ROWS": str(len(records))}, pin, produce)
    rows = int(figures["rows"])
    stored = stored_rows(env["MLOPS_MONITORING_DB_URL"])
    if rows != len(records) or stored != len(records) or client.xlen(stream):
        raise SystemExit(f"{source}: {rows} handled, {stored} stored of {len(records)}")
    return Run(rows, int(figures["batches"]), figures["wall"], figures["cpu"], figures["server"])


def report(name: str, runs: list[Run]) -> dict[str, float]:
    figures = {
        "rows/s": median(r.rows_per_second for r in runs),
        "client": median(r.per_1000(r.client_cpu) for r in runs),
        "server": median(r.per_1000(r.server_cpu) for r in runs),
        "batch": median(r.rows / r.batches for r in runs),
    }
    print(
        f"{name:12s} {figures['rows/s']:9,.0f} rows/s   writer CPU {figures['client']:6.1f} ms"
        f" / 1,000 rows   PostgreSQL CPU {figures['server']:6.1f} ms / 1,000 rows"
        f"   {figures['batch']:5.1f} rows/batch"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="records per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each writer, interleaved")
    parser.add_argument("--batch", type=int, default=500, help="MLOPS_PREDICTION_LOG_BATCH_ROWS")
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="XADD the records one by one at this many a second while the writer runs "
        "(the stack's situation: small batches); 0: fill the stream first, then drain it",
    )
    parser.add_argument("--baseline", type=Path, help="a directory holding another commit's src/")
    parser.add_argument("--cpu", default="1", help="core the writer is pinned to (taskset -c)")
    parser.add_argument("--postgres-url", default=os.environ.get("MLOPS_TEST_POSTGRES_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("MLOPS_TEST_REDIS_URL"))
    args = parser.parse_args()
    if not args.postgres_url or not args.redis_url:
        parser.error("needs --postgres-url and --redis-url (or . /tmp/mlops-test-services/env)")

    admin_url = make_url(args.postgres_url)
    url = admin_url.set(database=DATABASE).render_as_string(hide_password=False)
    stream = f"logwrite-bench-{os.getpid()}"
    env = {
        **os.environ,
        "MLOPS_REDIS_URL": args.redis_url,
        "MLOPS_PREDICTION_STREAM": stream,
        "MLOPS_MONITORING_DB_URL": url,
        "MLOPS_PREDICTION_LOG_BATCH_ROWS": str(args.batch),
        "MLOPS_LOG_LEVEL": "WARNING",
    }
    pin = ["taskset", "-c", args.cpu] if shutil.which("taskset") else []
    others = set(os.sched_getaffinity(0)) - {int(args.cpu)}
    if pin and others:  # the producer (this process) stays off the writer's core
        os.sched_setaffinity(0, others)
    writers = {"this tree": SOURCE}
    if args.baseline is not None:
        writers = {"baseline": args.baseline.resolve() / "src", **writers}
    client = redis.Redis.from_url(args.redis_url)
    recreate_database(admin_url)
    rng = random.Random(0)
    runs: dict[str, list[Run]] = {name: [] for name in writers}
    try:
        for source in writers.values():  # warm-up: migrate, fill caches; not counted
            measure(source, payloads(1000, rng), client, env, pin, 0)
        for round_ in range(args.rounds):
            order = list(writers.items())
            for name, source in order if round_ % 2 == 0 else reversed(order):
                records = payloads(args.rows, rng)
                runs[name].append(measure(source, records, client, env, pin, args.rate))
    finally:
        client.delete(stream, f"{stream}:dead")
        client.close()
        drop_database(admin_url)

    pace = (
        f"XADDed at {args.rate:g}/s while it writes" if args.rate else "drained from a full stream"
    )
    print(
        f"{args.rows:,} rows per run, {pace}, batches of at most {args.batch}, writer pinned to "
        f"core {args.cpu}; medians of {args.rounds} interleaved runs"
    )
    figures = {name: report(name, results) for name, results in runs.items()}
    if "baseline" in figures:
        old, new = figures["baseline"], figures["this tree"]
        print(
            f"this tree vs baseline: {new['rows/s'] / old['rows/s']:.2f}x rows/s, "
            f"{old['client'] / new['client']:.2f}x less writer CPU, "
            f"{old['server'] / new['server']:.2f}x less PostgreSQL CPU per row"
        )


if __name__ == "__main__":
    main()
