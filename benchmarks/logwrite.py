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
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import redis
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mlops_stack.prediction_log.records import PredictionRecord

SOURCE = Path(__file__).resolve().parents[1] / "src"  # this tree's code, whatever is installed
DATABASE = "logwrite_bench"
FEATURES = 30

# Runs in the measured process: the writer of whichever src is first on PYTHONPATH.
DRAIN = """
import json, sys, time
import psutil
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

writer = StreamWriter(Settings(), consumer="bench")
writer.store.ensure_schema()
server = server_cpu()
rows, cpu, wall = 0, time.process_time(), time.perf_counter()
while handled := writer.run_once(block_ms=1):  # 0: the stream is empty (or the DB down)
    rows += handled
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
spent = sum(seconds - server.get(pid, 0.0) for pid, seconds in server_cpu().items())
writer.close()
json.dump({"rows": rows, "cpu": cpu, "wall": wall, "server": spent}, sys.stdout)
"""


@dataclass(frozen=True)
class Run:
    rows: int
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


def drain(source: Path, env: dict[str, str], pin: list[str]) -> dict[str, float]:
    """Run the writer of ``source`` until the stream is empty: rows, its CPU and wall seconds,
    the PostgreSQL processes' CPU seconds meanwhile (read before its backend exits)."""
    command = [*pin, sys.executable, "-c", DRAIN]
    result = subprocess.run(
        command, env={**env, "PYTHONPATH": str(source)}, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"the writer of {source} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def measure(
    source: Path, records: list[str], client: redis.Redis, env: dict[str, str], pin: list[str]
) -> Run:
    stream = env["MLOPS_PREDICTION_STREAM"]
    client.delete(stream, f"{stream}:dead")
    pipe = client.pipeline(transaction=False)
    for record in records:
        pipe.xadd(stream, {"record": record})
    pipe.execute()
    figures = drain(source, env, pin)
    rows = int(figures["rows"])
    stored = stored_rows(env["MLOPS_MONITORING_DB_URL"])
    if rows != len(records) or stored != len(records) or client.xlen(stream):
        raise SystemExit(f"{source}: {rows} handled, {stored} stored of {len(records)}")
    return Run(rows, figures["wall"], figures["cpu"], figures["server"])


def report(name: str, runs: list[Run]) -> dict[str, float]:
    figures = {
        "rows/s": median(r.rows_per_second for r in runs),
        "client": median(r.per_1000(r.client_cpu) for r in runs),
        "server": median(r.per_1000(r.server_cpu) for r in runs),
    }
    print(
        f"{name:12s} {figures['rows/s']:9,.0f} rows/s   writer CPU {figures['client']:6.1f} ms"
        f" / 1,000 rows   PostgreSQL CPU {figures['server']:6.1f} ms / 1,000 rows"
        f"   ({len(runs)} runs, medians)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="records per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each writer, interleaved")
    parser.add_argument("--batch", type=int, default=500, help="MLOPS_LOG_BATCH_SIZE")
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
        "MLOPS_LOG_BATCH_SIZE": str(args.batch),
        "MLOPS_LOG_LEVEL": "WARNING",
    }
    pin = ["taskset", "-c", args.cpu] if shutil.which("taskset") else []
    writers = {"this tree": SOURCE}
    if args.baseline is not None:
        writers = {"baseline": args.baseline.resolve() / "src", **writers}
    client = redis.Redis.from_url(args.redis_url)
    recreate_database(admin_url)
    rng = random.Random(0)
    runs: dict[str, list[Run]] = {name: [] for name in writers}
    try:
        for source in writers.values():  # warm-up: migrate, fill caches; not counted
            measure(source, payloads(1000, rng), client, env, pin)
        for round_ in range(args.rounds):
            order = list(writers.items())
            for name, source in order if round_ % 2 == 0 else reversed(order):
                runs[name].append(measure(source, payloads(args.rows, rng), client, env, pin))
    finally:
        client.delete(stream, f"{stream}:dead")
        client.close()
        drop_database(admin_url)

    print(f"{args.rows:,} rows per run, batches of {args.batch}, writer pinned to core {args.cpu}")
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
