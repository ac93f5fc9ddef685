"""The stack's log lines: one renderer, and not silenced when Prefect sets up its logging.

The flow tests run a small flow the way the stack does (settings, then logging, then Prefect;
once in the process and once in a subprocess Prefect starts, as the worker's runner does)
against the session's Prefect API, and read every line the processes printed.
"""

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from prefect.logging.configuration import setup_logging

from mlops_stack.logs import (
    TRACEBACK_FRAMES,
    TracebackBudget,
    bounded_traceback,
    configure_logging,
    get_logger,
)

# what configure_logging exports for the processes Prefect starts: not for the next test
PREFECT_LOGGING_ENV = (
    "PREFECT_LOGGING_SETTINGS_PATH",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER",
    "PREFECT_LOGGING_LOGGERS_MLOPS_STACK_LEVEL",
)


@pytest.fixture
def json_logging(monkeypatch):
    for key in PREFECT_LOGGING_ENV:
        monkeypatch.setenv(key, "")  # recorded, so the teardown restores the original
        monkeypatch.delenv(key)
    configure_logging("INFO", json=True)
    yield
    for logger in (logging.getLogger(), logging.getLogger("mlops_stack")):
        logger.handlers = [h for h in logger.handlers if h.get_name() != "mlops-stack"]
    logging.getLogger("mlops_stack").propagate = True
    setup_logging(incremental=False)


def _events(err: str, name: str) -> list[dict]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == name]


def test_our_lines_survive_prefect_replacing_the_root_handlers(json_logging, capsys):
    # What importing the flows does in a worker: Prefect installs its own root handlers.
    setup_logging(incremental=False)
    get_logger("mlops_stack.worker").info("still_here", answer=42)
    err = capsys.readouterr().err
    events = _events(err, "still_here")
    assert len(events) == 1 and events[0]["answer"] == 42 and events[0]["level"] == "info"
    assert err.count("still_here") == 1  # not printed again by Prefect's console handler


def _failure(secret: str) -> Exception:
    """An exception raised under a frame whose local variable holds ``secret``; of a type of
    its own, so that the process's traceback budget has not been spent on it yet."""
    kind = type(f"Failure{uuid.uuid4().hex[:8]}", (ValueError,), {})

    def handler() -> None:
        api_secret = secret  # noqa: F841 (what a traceback with locals would print)
        raise kind("the handler failed")

    try:
        handler()
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_a_traceback_from_any_logger_has_no_local_variable(monkeypatch, capsys, json_lines):
    for key in PREFECT_LOGGING_ENV:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    # uvicorn as `mlops serve api` runs it (log_config=None): its records reach the root's
    # handler (an earlier test's Prefect logging setup may have given it one of its own)
    uvicorn = logging.getLogger("uvicorn")
    monkeypatch.setattr(uvicorn, "handlers", [])
    monkeypatch.setattr(uvicorn, "propagate", True)
    configure_logging("INFO", json=json_lines)
    try:
        capsys.readouterr()
        failure = _failure("sk-live-0123456789abcdef")
        # what uvicorn logs for an exception that escaped the app, and what our code logs
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=failure)
        get_logger("mlops_stack.api").error("request", exc_info=failure)
        err = capsys.readouterr().err
    finally:
        for logger in (logging.getLogger(), logging.getLogger("mlops_stack")):
            logger.handlers = [h for h in logger.handlers if h.get_name() != "mlops-stack"]
        logging.getLogger("mlops_stack").propagate = True
    assert err.count(": the handler failed") == 2  # both tracebacks, to the exception
    assert "0123456789abcdef" not in err and "api_secret =" not in err
    if json_lines:
        assert len(err.splitlines()) == 2  # one line per error event


def test_tracebacks_are_rate_limited_per_type_and_the_suppressed_ones_counted():
    now = [0.0]
    budget = TracebackBudget(per_minute=3, clock=lambda: now[0])
    failure = _failure("x")

    def log(exc: Exception) -> dict:
        return budget(None, "error", {"event": "request", "exc_info": exc})

    first = [log(failure) for _ in range(10)]
    assert [("exc_info" in e) for e in first] == [True] * 3 + [False] * 7
    assert all(e["traceback_suppressed"] for e in first[3:])
    assert {e["error_type"] for e in first} == {
        f"{type(failure).__module__}.{type(failure).__qualname__}"
    }
    assert "exc_info" in log(KeyError("another type, another budget"))
    now[0] = 61.0  # the next minute: a traceback again, saying how many were left out
    assert log(failure)["tracebacks_suppressed"] == 7
    assert "tracebacks_suppressed" not in log(failure)


def test_a_traceback_keeps_its_innermost_frames_only():
    def recurse(depth: int) -> None:
        if depth == 0:
            raise RuntimeError("at the bottom")
        recurse(depth - 1)

    try:
        recurse(100)
    except RuntimeError as exc:
        text = bounded_traceback((RuntimeError, exc, exc.__traceback__))
    # identical frames are printed once with "[Previous line repeated N more times]"
    repeated = sum(int(n) for n in re.findall(r"repeated (\d+) more time", text))
    assert text.count('File "') + repeated == TRACEBACK_FRAMES
    assert text.endswith("RuntimeError: at the bottom")


def test_other_libraries_go_through_the_same_renderer(json_logging, capsys):
    logging.getLogger("some_library.module").warning("from_the_standard_library")
    events = _events(capsys.readouterr().err, "from_the_standard_library")
    assert len(events) == 1 and events[0]["logger"] == "some_library.module"


FLOW_MODULE = """
import logging

import mlflow  # configures its own loggers at import unless told not to
from prefect import flow, get_run_logger, task

from mlops_stack.logs import get_logger

log = get_logger("mlops_stack.logflow")


@task
def step(x: int) -> int:
    get_run_logger().info("prefect task line")
    log.info("project_task_line", x=x)
    return x + 1


@flow
def demo(where: str) -> int:
    get_run_logger().info("prefect flow line")
    log.info("project_flow_line", where=where)
    logging.getLogger("mlflow.tracking").warning("an mlflow line")
    return step(1)
"""

# As `mlops worker` starts: settings, logging, and only then Prefect; the flow runs here and
# in a subprocess started the way Prefect's runner starts a deployment's run.
DRIVER = """
if __name__ == "__main__":
    from mlops_stack.logs import configure_logging
    from mlops_stack.settings import get_settings

    settings = get_settings()
    settings.prepare_environment()
    configure_logging(settings.log_level, settings.log_json)

    from prefect.flow_engine import run_flow_in_subprocess

    from logflow import demo

    demo("in-process")
    child = run_flow_in_subprocess(demo, parameters={"where": "subprocess"})
    child.join()
    raise SystemExit(child.exitcode)
"""


def _run_flows(tmp_path: Path, log_json: bool) -> list[str]:
    """Every non-empty line the driver and its flow subprocess printed, stdout and stderr."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "logflow.py").write_text(textwrap.dedent(FLOW_MODULE))
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLOPS_", "PREFECT_LOGGING_"))
    }
    env.update(
        MLOPS_DATA_DIR=str(tmp_path / "data"),
        MLOPS_LOG_JSON=str(log_json).lower(),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "driver.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


FINISHED = "Finished in state Completed()"


def _api_messages(flow_run_id: str) -> list[str]:
    """The log messages Prefect's API holds for a flow run (what its UI shows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]
