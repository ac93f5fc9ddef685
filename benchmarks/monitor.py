"""One monitor run over a large window of logged predictions: wall time and peak memory.

Trains a champion on the built-in 30-feature table in a temporary data directory, bulk-inserts
``--rows`` logged predictions (the newest ``--drifted`` share shifted on the demo's ten size and
texture features, ``--labelled`` of them with a true label, and a few deliberately bad rows:
values far outside the training range and missing values, at random positions) into the
monitoring database, then measures, each in a fresh child process:

  - ``monitor_flow()`` end to end, the real flow (Prefect, MLflow run, Evidently HTML report),
    with ``MLOPS_MONITOR_WINDOW_ROWS`` = the rows inserted: once against a running Prefect
    server (as the compose stack's worker runs it) and once with no Prefect API (as
    ``mlops monitor`` runs it embedded: the flow runs in the process, no Prefect server);
  - read + checks only, streamed with a sample (what the flow does now);
  - read + checks only, the full read the flow did before (every row and its JSON in memory,
    then ``check_window`` over the whole frame): the baseline.

    python benchmarks/monitor.py [--rows 1000000] [--db-url postgresql+psycopg2://...]

``--db-url`` points at a PostgreSQL server: a temporary database is created on it and dropped
afterwards. Without it the embedded SQLite file is used. Insert time is reported separately.
Peak memory is the largest resident set of the child process and its children, sampled every
50 ms. Not a test: record the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import psutil
from scratch import temporary_database
from sqlalchemy import make_url
from tests.support.monitoring import Monitoring

BIN = Path(sys.executable).parent
MODEL = "mlops-classifier"
# Bad rows on features the drift leaves alone: values far out of range, missing values.
BAD_ROWS = {"mean symmetry": 3, "mean fractal dimension": 4}

# Ten size and texture features of the built-in table (the shift the figures were measured on).
SHIFTED = (
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
)


def logged_rows(rows: int, drifted: float, labelled: float, seed: int):
    """Feature rows (bootstrap of the table), their labels, and which rows are labelled.

    The newest ``drifted`` share is shifted by 1.5 standard deviations on ``SHIFTED``'s ten
    features; the bad rows of ``BAD_ROWS`` sit at random positions.
    """
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer(as_frame=True).frame
    features, target = table.drop(columns="target"), table["target"]
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(features), rows)
    values = features.to_numpy()[picked].astype(object)
    columns = list(features.columns)
    first_drifted = rows - int(rows * drifted)
    for name in SHIFTED:
        j = columns.index(name)
        spread = float(features[name].std())
        values[first_drifted:, j] = values[first_drifted:, j] + 1.5 * spread
    bad = rng.choice(rows, sum(BAD_ROWS.values()), replace=False)
    out_of_range, missing = BAD_ROWS
    values[bad[: BAD_ROWS[out_of_range]], columns.index(out_of_range)] = 1e6
    values[bad[BAD_ROWS[out_of_range] :], columns.index(missing)] = None
    labels = target.to_numpy()[picked]
    has_label = rng.random(rows) < labelled
    return columns, values, labels, has_label


def insert(db_url: str, env: dict, args) -> dict:
    """Bulk-insert the logged rows and labels; COPY on PostgreSQL, executemany on SQLite."""
    import mlflow

    mlflow.set_tracking_uri(env["MLOPS_TRACKING_URI"])
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    store = Monitoring(db_url)
    store.migrate()
    started = time.perf_counter()
    columns, values, labels, has_label = logged_rows(
        args.rows, args.drifted, args.labelled, args.seed
    )
    base = datetime.now(UTC) - timedelta(hours=1)
    step = 3600 / args.rows
    for start in range(0, args.rows, args.chunk):
        part = values[start : start + args.chunk]
        frame = pd.DataFrame(part, columns=columns).astype(float)
        proba = model.predict_proba(frame.fillna(frame.mean()))
        rows = []
        for i, row in enumerate(part):
            n = start + i
            rows.append(
                (
                    f"b{n}",
                    0,
                    base + timedelta(seconds=n * step),
                    MODEL,
                    "1",
                    orjson.dumps(dict(zip(columns, row, strict=True))).decode(),
                    str(int(proba[i, 1] >= 0.5)),
                    orjson.dumps({"0": float(proba[i, 0]), "1": float(proba[i, 1])}).decode(),
                    1.0,
                )
            )
        write_rows(store, "predictions", PREDICTION_COLUMNS, rows)
    feedback = [(f"b{n}", 0, str(int(labels[n])), base) for n in np.flatnonzero(has_label).tolist()]
    for start in range(0, len(feedback), args.chunk):
        write_rows(store, "feedback", FEEDBACK_COLUMNS, feedback[start : start + args.chunk])
    seconds = time.perf_counter() - started
    count = store.predictions.count_predictions()
    store.dispose()
    return {"seconds": seconds, "rows": count, "labelled": len(feedback)}


PREDICTION_COLUMNS = (
    "request_id",
    "row",
    "created_at",
    "model_name",
    "model_version",
    "features",
    "prediction",
    "probabilities",
    "latency_ms",
)
FEEDBACK_COLUMNS = ("request_id", "row", "label", "received_at")


def write_rows(store, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """One chunk, as fast as the driver goes: COPY on PostgreSQL, executemany on SQLite.

    SQLite gets times in the text form SQLAlchemy's DateTime stores (and the store reads back).
    """
    raw = store.monitoring_db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.monitoring_db.dialect == "postgresql":
            buffer = io.StringIO()
            for row in rows:
                buffer.write("\t".join(_copy_text(v) for v in row) + "\n")
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(_sqlite(v) for v in row) for row in rows],
            )
        raw.commit()
    finally:
        raw.close()


def _copy_text(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).replace("\\", "\\\\")


def _sqlite(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


FLOW = """
import dataclasses, json, resource, sys, time
started = time.perf_counter()
from mlops_stack.flows.monitor import monitor_flow
from tests.support.monitoring import Monitoring
from mlops_stack.settings import get_settings
imported = time.perf_counter()
summary = monitor_flow()
done = time.perf_counter()
settings = get_settings()
store = Monitoring(settings.resolved_monitoring_db_url)
[run] = store.monitor_store.runs(settings.model_name, limit=1)
print(json.dumps({
    "seconds": done - started, "flow_seconds": done - imported,
    "summary": dataclasses.asdict(summary),
    "quality": run.quality,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}, default=str))
"""

# Read + checks only, as the flow does them now and as it did before (the baseline).
CHECKS = """
import json, resource, sys, time
started = time.perf_counter()
import pandas as pd
from mlops_stack.flows.monitor import load_champion, window_bounds
from mlops_stack.flows.parameters import MonitorParameters
from mlops_stack.monitoring.checks import Current, Reference, check_sample, check_window
from mlops_stack.monitoring.window import read_window
from mlops_stack.stack import current_stack
stack = current_stack()
settings = stack.settings
champion = load_champion.fn(stack)
store = stack
since, limit = window_bounds(MonitorParameters.from_settings(settings))
mode = sys.argv[1]
read_started = time.perf_counter()
if mode == "streamed":
    window = read_window(
        store.monitor_store.window_chunks(since, limit, model_name=settings.model_name),
        champion.schema, max_rows=settings.monitor_max_rows, seed=settings.random_seed,
    )
    read_done = time.perf_counter()
    result = check_sample(
        Reference(champion.reference, champion.reference_predictions), window,
        champion.schema, max_rows=settings.monitor_max_rows, seed=settings.random_seed,
    )
else:
    from benchmark_full_read import full_read
    frame = full_read(store, limit, settings.model_name)
    read_done = time.perf_counter()
    names = champion.schema.feature_names
    labelled = frame["label"].notna().any()
    probabilities = pd.DataFrame(
        list(frame["probabilities"].map(lambda p: p or {})), index=frame.index
    ) if labelled else None
    result = check_window(
        Reference(champion.reference, champion.reference_predictions),
        Current(
            frame[names], predictions=frame["prediction"].astype(str),
            labels=frame["label"] if labelled else None, probabilities=probabilities,
            classes=champion.schema.classes,
        ),
        champion.schema, max_rows=settings.monitor_max_rows, seed=settings.random_seed,
    )
done = time.perf_counter()
print(json.dumps({
    "seconds": done - read_started, "read_seconds": read_done - read_started,
    "note": result.sample_note, "drifted": len(result.drifted_features()),
    "quality": [q.__dict__ for q in result.quality],
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}, default=str))
"""

# The window read as monitor_flow did it before the streamed read (commit 3299033), verbatim
# but for names: every row of the join as a dict, its JSON decoded by the driver, one frame.
FULL_READ = """
import pandas as pd
from sqlalchemy import and_, select
from mlops_stack.monitoring_db.window_frames import FRAME_COLUMNS
from mlops_stack.monitoring_db.tables import FEEDBACK, PREDICTIONS


def full_read(store, limit, model_name):
    columns = [PREDICTIONS.c[name] for name in FRAME_COLUMNS[:8]]
    query = select(
        *columns, PREDICTIONS.c.features, FEEDBACK.c.label, FEEDBACK.c.received_at
    ).select_from(
        PREDICTIONS.outerjoin(
            FEEDBACK,
            and_(
                FEEDBACK.c.request_id == PREDICTIONS.c.request_id,
                FEEDBACK.c.row == PREDICTIONS.c.row,
            ),
        )
    ).where(PREDICTIONS.c.model_name == model_name)
    query = query.order_by(PREDICTIONS.c.created_at.desc(), PREDICTIONS.c.id.desc()).limit(limit)
    with store.monitoring_db.engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    rows.reverse()
    features = [row.pop("features") or {} for row in rows]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    for name in ("created_at", "received_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    expanded = pd.DataFrame(features, index=frame.index)
    return pd.concat([frame, expanded], axis=1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prefect_server(env: dict, workdir: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server of this run's own (not measured), as the stack's worker talks to."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(workdir / "prefect-server.log").open("a"),
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return server, api
        except httpx.HTTPError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the Prefect server did not become healthy in 120 s")


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def measure(code: str, argv: list[str], env: dict, workdir: Path) -> dict:
    """Run ``code`` in a fresh interpreter; wall time, peak RSS of its process tree, its JSON."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=(workdir / "child.log").open("a"),
        text=True,
    )
    process = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(process))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"child failed ({child.returncode}); see {workdir / 'child.log'}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall=wall, peak_mb=peak / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged rows in the window")
    parser.add_argument("--db-url", help="PostgreSQL server URL (default: embedded SQLite)")
    parser.add_argument("--drifted", type=float, default=0.3, help="newest share shifted")
    parser.add_argument("--labelled", type=float, default=0.1, help="share with a true label")
    parser.add_argument("--max-rows", type=int, default=50_000, help="MLOPS_MONITOR_MAX_ROWS")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per insert batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the full-read baseline")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    data_dir = workdir / "mlops-data"
    (workdir / "benchmark_full_read.py").write_text(FULL_READ)
    drop = None
    if args.db_url:
        db_url, drop = temporary_database(args.db_url, "bench_monitor")
    else:
        db_url = f"sqlite:///{data_dir / 'monitoring.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")},
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(workdir),
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_CANDIDATES": "logistic_regression",
        "MLOPS_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLOPS_MONITORING_DB_URL": db_url,
        "MLOPS_MONITOR_WINDOW_ROWS": str(args.rows),
        "MLOPS_MONITOR_MAX_ROWS": str(args.max_rows),
        "MLOPS_LOG_LEVEL": "WARNING",
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    os.environ.update(env)
    try:
        print(f"== training a champion in {workdir}", flush=True)
        subprocess.run([str(BIN / "mlops"), "train"], env=env, check=True, capture_output=True)
        backend = make_url(db_url).get_backend_name()
        print(f"== inserting {args.rows} logged rows into {backend}", flush=True)
        inserted = insert(db_url, env, args)
        print(
            f"   {inserted['rows']} rows, {inserted['labelled']} labelled, "
            f"{inserted['seconds']:.1f} s",
            flush=True,
        )
        runs = {}
        server, api = start_prefect_server(env, workdir)
        try:
            print("== monitor_flow() end to end, Prefect server running", flush=True)
            runs["served"] = measure(FLOW, [], {**env, "PREFECT_API_URL": api}, workdir)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print("== monitor_flow() end to end, embedded (no Prefect API)", flush=True)
        runs["flow"] = measure(FLOW, [], env, workdir)
        print("== read + checks, streamed", flush=True)
        runs["streamed"] = measure(CHECKS, ["streamed"], env, workdir)
        if not args.no_baseline:
            print("== read + checks, full read (before)", flush=True)
            runs["full"] = measure(CHECKS, ["full"], env, workdir)
        report(args, backend, inserted, runs)
    finally:
        if drop is not None:
            drop()
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def report(args, backend: str, inserted: dict, runs: dict) -> None:
    load = os.getloadavg()
    flow = runs["flow"]
    summary = flow["summary"]
    print(
        f"\n{inserted['rows']} logged rows x 30 features ({inserted['labelled']} labelled, "
        f"newest {args.drifted:.0%} drifted), {backend}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end"
    )
    print(f"insert (not counted): {inserted['seconds']:.1f} s")
    print(f"{'run':46} {'wall s':>8} {'read s':>8} {'peak MB':>9} {'us/row':>8}")
    rows = inserted["rows"]
    served = runs["served"]
    lines = [
        ("monitor_flow(), Prefect server: process", served["wall"], None, served["peak_mb"]),
        ("  of which the flow run", served["flow_seconds"], None, None),
        ("monitor_flow(), embedded: process", flow["wall"], None, flow["peak_mb"]),
        ("  of which the flow run", flow["flow_seconds"], None, None),
    ]
    for key, name in (
        ("streamed", "read + checks, streamed (now)"),
        ("full", "read + checks, full read (before)"),
    ):
        if key in runs:
            run = runs[key]
            lines.append((name, run["seconds"], run["read_seconds"], run["peak_mb"]))
    for name, wall, read, peak in lines:
        print(
            f"{name:46} {wall:8.1f} {'' if read is None else f'{read:8.1f}':>8} "
            f"{'' if peak is None else f'{peak:9.0f}':>9} {wall / rows * 1e6:8.1f}"
        )
    if "full" in runs:
        full, now = runs["full"], runs["streamed"]
        print(
            f"\nstreamed vs full read: {full['seconds'] / now['seconds']:.1f}x faster, "
            f"{full['peak_mb'] / now['peak_mb']:.1f}x less memory (read + checks)"
        )
    print(f"\nstatus: {summary['status']} ({summary['reason']})")
    print(
        f"window_rows {summary['window_rows']}, analysed_rows {summary['analysed_rows']}, "
        f"labelled_rows {summary['labelled_rows']}"
    )
    print(f"sample_note: {summary['sample_note']}")
    quality = {q["feature"]: q for q in flow["quality"]}
    out_of_range, missing = BAD_ROWS
    print(
        f"bad rows inserted: {BAD_ROWS[out_of_range]} {out_of_range} out of range, "
        f"{BAD_ROWS[missing]} {missing} missing; counted by the run: "
        f"{quality[out_of_range]['out_of_range']} out of range, "
        f"{round(quality[missing]['missing_share'] * rows)} missing"
    )


if __name__ == "__main__":
    main()
