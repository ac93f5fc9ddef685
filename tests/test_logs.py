"""The stack's log lines: one renderer, and not silenced when Prefect sets up its logging."""

import json
import logging

import pytest
from prefect.logging.configuration import setup_logging

from mlops_stack.logs import configure_logging, get_logger


@pytest.fixture
def json_logging():
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


def test_other_libraries_go_through_the_same_renderer(json_logging, capsys):
    logging.getLogger("some_library.module").warning("from_the_standard_library")
    events = _events(capsys.readouterr().err, "from_the_standard_library")
    assert len(events) == 1 and events[0]["logger"] == "some_library.module"
