"""The stack's log lines: one renderer, and not silenced when Prefect sets up its logging.

The flow tests run a small flow the way the stack does (settings, then logging, then Prefect;
once in the process and once in a subprocess Prefect starts, as the worker's runner does)
against the session's Prefect API, and read every line the processes printed.
"""

import json

from tests.support.servers import wait_for
from tests.unit.test_logs import FINISHED, _api_messages, _run_flows


def test_a_flow_run_prints_one_json_object_per_line_prefect_and_ours(prefect_server, tmp_path):
    events = [json.loads(line) for line in _run_flows(tmp_path, log_json=True)]  # each line

    for where in ("in-process", "subprocess"):
        [ours] = [e for e in events if e["event"] == "project_flow_line" and e["where"] == where]
        assert ours["logger"] == "mlops_stack.logflow" and ours["level"] == "info"
        assert ours["flow_name"] == "demo" and ours["flow_run_name"] and ours["flow_run_id"]
        run = ours["flow_run_id"]
        finished = [e for e in events if e.get("flow_run_id") == run and e["event"] == FINISHED]
        # the flow's and the task's, from Prefect's own loggers, with the run they belong to
        assert {e["logger"] for e in finished} == {"prefect.flow_runs", "prefect.task_runs"}
        assert all(e["flow_run_name"] == ours["flow_run_name"] for e in finished)
        [task_line] = [e for e in events if e["event"] == "project_task_line" and
                       e["flow_run_id"] == run]  # fmt: skip
        assert task_line["task_name"] == "step" and task_line["task_run_name"].startswith("step")
        # the Prefect UI still gets the run's log, as plain messages
        messages = wait_for(
            lambda run=run: FINISHED in (m := _api_messages(run)) and m,
            30,
            "the flow run's log in Prefect's API",
        )
        assert "prefect flow line" in messages
    mlflow_lines = [e for e in events if e["event"] == "an mlflow line"]
    assert len(mlflow_lines) == 2 and all(e["logger"] == "mlflow.tracking" for e in mlflow_lines)


def test_on_a_terminal_prefect_lines_are_structlog_console_lines(prefect_server, tmp_path):
    lines = _run_flows(tmp_path, log_json=False)

    assert not [line for line in lines if "{'event'" in line or line.startswith("{")]
    ours = [line for line in lines if "project_flow_line" in line]
    assert len(ours) == 2 and all("[mlops_stack.logflow]" in line for line in ours)
    assert all("flow_run_name=" in line and "flow_run_id" not in line for line in ours)
    finished = [line for line in lines if FINISHED in line and "[prefect.flow_runs]" in line]
    assert len(finished) == 2 and all("[info" in line for line in finished)
