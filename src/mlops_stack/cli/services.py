"""The stack's long-running processes, each in the foreground: ``serve api`` (the predictor),
``serve dashboard``, ``log-writer`` (the Redis stream into the monitoring database) and
``worker`` (the flows as Prefect deployments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops_stack.cli.defaults import _from_setting
from mlops_stack.cli.runtime import _fail, _installed, _prepare


def serve_api(
    host: Annotated[
        str | None, typer.Option(help="Listen address", show_default=_from_setting("api_host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port", show_default=_from_setting("api_port"))
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="uvicorn worker processes; 0: one per usable CPU (affinity, cgroup quota)",
            show_default=_from_setting("api_workers"),
            min=0,
            max=32,
            metavar="N",
        ),
    ] = None,
) -> None:
    """Serve the registry's champion over HTTP (FastAPI + uvicorn).

    POST /predict and /predict/batch answer with the prediction, class probabilities, model
    version and request id; POST /feedback takes true labels; GET /health, /ready, /model,
    /metrics and /docs describe the service. Every answered row is logged to the monitoring
    database (through Redis when MLOPS_REDIS_URL is set). When the alias moves, the new
    version is loaded in the background and swapped in without failing a request.
    """
    settings = _prepare()
    import uvicorn

    host, port = host or settings.api_host, port or settings.api_port
    from mlops_stack.serving.workers import worker_count

    workers = worker_count(workers if workers is not None else settings.api_workers)
    from mlops_stack.serving.access import configured_keys

    try:  # fail here, with the reason, rather than in every worker process
        configured_keys(settings)
    except ValueError as exc:
        raise _fail(str(exc), code=2) from None
    from mlops_stack.serving.multiprocess import metrics_directory

    # before anything imports prometheus_client: it reads PROMETHEUS_MULTIPROC_DIR at import
    with metrics_directory(workers):
        if workers > 1:
            uvicorn.run(
                "mlops_stack.serving.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_config=None,
                access_log=False,
            )
        else:
            from mlops_stack.serving.app import create_app

            uvicorn.run(
                create_app(_installed(settings)),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
            )
    _exit_after_clean_shutdown()


def _exit_after_clean_shutdown() -> None:
    """Exit 0 at once after the server stopped cleanly, skipping the interpreter's teardown.

    Why: the predictor's stop (SIGTERM) has already closed everything it holds in its
    lifespan (prediction log flushed, stack closed), and tearing down its ~3,400 imported
    modules costs 1.5 s of CPU, several seconds of `docker stop` on a busy VM, which every
    step of a rolling update waits for. The worker processes of ``--workers N`` end the same
    way (multiprocessing). A failed start never gets here: uvicorn exits with its own code.
    """
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def log_writer() -> None:
    """Drain the Redis prediction stream into the monitoring database, until stopped.

    Reads MLOPS_PREDICTION_STREAM as a member of the consumer group MLOPS_STREAM_GROUP,
    writes batches idempotently and acknowledges only what was committed, so nothing is lost
    while the database is down: entries wait in the stream and are written when it returns.
    """
    settings = _prepare()
    if not settings.redis_url:
        raise _fail(
            "MLOPS_REDIS_URL is not set: without Redis the predictor writes its "
            "predictions itself and there is no stream to drain",
            code=2,
        )
    import signal
    import threading

    from mlops_stack.prediction_log.stream import StreamWriter
    from mlops_stack.stack import Stack

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Stack(settings) as stack:
        StreamWriter(settings, stack.predictions).run_forever(stop)


def worker() -> None:
    """Serve the flows as Prefect deployments and drain the prediction stream, until stopped.

    Deployments: train/train and retrain/retrain (on demand), monitor/monitor (every
    MLOPS_MONITOR_INTERVAL_MINUTES). With MLOPS_REDIS_URL it also writes the prediction stream
    into the monitoring database, and with MLOPS_BOOTSTRAP_CHAMPION it starts one train run
    when the registry has no champion. Needs a Prefect server (MLOPS_PREFECT_API_URL).
    """
    settings = _prepare()
    if not settings.prefect_api_url:
        raise _fail(
            "MLOPS_PREFECT_API_URL is not set: deployments need a Prefect server "
            "(embedded, run `mlops train` / `mlops monitor` directly)",
            code=2,
        )
    from mlops_stack.worker import run_worker

    run_worker(_installed(settings))


def serve_dashboard(
    port: Annotated[int, typer.Option(help="Listen port")] = 8501,
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    base_path: Annotated[
        str,
        typer.Option(
            help="Path prefix behind a reverse proxy, e.g. 'dashboard'",
            show_default="none: served at /",
        ),
    ] = "",
) -> None:
    """Serve the Streamlit dashboard: champion, status and drift from the stack's stores, and
    the stack's landing page at <base-path>/status."""
    _prepare()  # fail early on bad settings; the Streamlit script reads the same environment
    import os
    import sys

    # dashboard/server.py: the pages (app.py) and the landing page's routes, one ASGI app
    script = Path(__file__).parents[1] / "dashboard" / "server.py"
    argv = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    if base_path:
        argv += ["--server.baseUrlPath", base_path.strip("/")]
    os.execv(sys.executable, argv)
