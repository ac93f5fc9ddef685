"""prometheus_client's multiprocess mode for `mlops serve api --workers N` (N > 1).

With several uvicorn workers each process counts its own requests; a scrape reaches one of them.
In multiprocess mode every worker writes its series to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``) and the worker that answers /metrics sums them all. The
alternative, one metrics process fed by the workers, would put an IPC hop on every request and
one more process to supervise, for what these files already do.

The directory is this module's: created fresh for each server start, never reused. The library
sums every file it finds, so a file left by an earlier run (a crash, a container restart; the
compose stack's ``/data`` volume outlives both) would inflate every counter. It lives under the
temporary directory (``TMPDIR``; a tmpfs in the prod compose file), not under the data
directory: two servers sharing a data directory must not read or wipe each other's files.

Nothing here imports prometheus_client at module level: the library picks its value class (in
memory or memory-mapped) once, when it is first imported, from the environment variable, so
the variable must be set before that import in every worker. The supervisor sets it before
uvicorn spawns the workers, which inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus_client reads at import to switch to multiprocess mode."""
PREFIX = "mlops-metrics-"
"""Directories are ``<TMPDIR>/mlops-metrics-<supervisor pid>-<random>``."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive): a directory or
    file named after a worker's pid is removed only once that worker is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def metrics_directory(workers: int) -> Iterator[Path | None]:
    """The multiprocess directory for one server start, set in the environment; None for one
    worker.

    One worker keeps the in-memory registry of its app (no files, no summing at scrape), so a
    ``PROMETHEUS_MULTIPROC_DIR`` inherited from the caller's shell is dropped rather than summed
    in with its stale files. With more, leftovers of servers that died without cleaning up are
    removed, a new directory is made and removed again when the server stops.
    """
    if workers <= 1:
        os.environ.pop(ENV, None)
        yield None
        return
    parent = Path(tempfile.gettempdir())
    remove_leftovers(parent)
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    os.environ[ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def remove_leftovers(parent: Path) -> list[Path]:
    """Delete the directories of servers that are gone; returns what was deleted.

    Only housekeeping (a new start never reads them): a supervisor killed with SIGKILL leaves its
    directory behind. One named after this very process is a leftover too: a container restarts
    its command with the same pid, and this start has not made its own directory yet.
    """
    removed = []
    for path in parent.glob(f"{PREFIX}*"):
        owner = path.name.removeprefix(PREFIX).split("-", 1)[0]
        if path.is_dir() and owner.isdigit():
            pid = int(owner)
            if pid == os.getpid() or not process_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def forget_dead_workers(directory: Path) -> list[int]:
    """Drop the ``live*`` gauge files of workers that are gone; returns their pids.

    uvicorn restarts a worker that died or hung but has no hook to say so (gunicorn's
    ``child_exit``), so the worker answering a scrape does it: a dead worker's queue depth
    must not stay in the sum. Its counters and histograms stay: they counted real requests,
    and a total that went down would read as a counter reset to Prometheus. A worker that
    stops normally removes its own files (``PredictorMetrics.stop``).
    """
    from prometheus_client.multiprocess import mark_process_dead

    dead = set()
    for path in directory.glob("gauge_live*_*.db"):
        owner = path.stem.rsplit("_", 1)[1]
        if owner.isdigit() and not process_alive(int(owner)):
            dead.add(int(owner))
    for pid in dead:
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return sorted(dead)
