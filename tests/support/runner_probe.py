"""One runner of a scheduled flow, as `mlops worker` serves its monitor: for
tests/integration/test_workers_scaled.py, which starts two of these against one Prefect server.

``python -m tests.runner_probe <interval seconds> <record file>``: serves the deployment
``probe/probe`` on :func:`mlops_stack.worker.every` (the worker's schedule: fixed anchor,
slug) with the worker's ``serve()`` options. Each run appends "<scheduled time> <runner pid>"
to the record file, so a slot executed twice shows as two lines, whichever runner ran them.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from prefect import flow, serve
from prefect.runtime import flow_run


@flow(name="probe")
def probe(record: str) -> None:
    """Say which slot ran, and in which runner (the parent of this run's process).

    It lasts a second, as any real run lasts longer: a run that ends before its heartbeat
    thread's first beat sends none."""
    time.sleep(1)
    line = f"{flow_run.scheduled_start_time.isoformat()} {os.getppid()}\n"
    with open(record, "a", encoding="utf-8") as out:  # one short append: lines do not mix
        out.write(line)


def main(interval_seconds: float, record: str) -> None:
    # here, not at the top: each run's process imports this module, and the worker's imports
    # (MLflow among them) would cost it seconds
    from mlops_stack.worker import HEARTBEAT_SECONDS, every

    deployment = probe.to_deployment(
        name="probe",
        schedules=[every(timedelta(seconds=interval_seconds))],
        parameters={"record": record},
        tags=["mlops-stack"],
    )
    serve(
        deployment,
        limit=2,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        pause_on_shutdown=False,
        print_starting_message=False,
    )


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2])
