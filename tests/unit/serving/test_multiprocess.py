"""The multiprocess directory of `mlops serve api --workers N`: fresh per start, gone after.

The server itself, with two workers, is in test_serving_workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from mlops_stack.serving.multiprocess import (
    ENV,
    PREFIX,
    forget_dead_workers,
    metrics_directory,
    remove_leftovers,
)


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of this test's own (tempfile caches the one it found first)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    return tmp_path


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    return gone.pid


def write(path: Path, name: str, value: float) -> None:
    """One unlabelled series in a file of prometheus_client's format, as a worker writes it."""
    values = MmapedDict(str(path))
    values.write_value(mmap_key(name, name, [], [], "help"), value, 0.0)
    values.close()


def test_several_workers_get_a_fresh_directory_set_before_they_start_and_removed_after(tmp):
    with metrics_directory(2) as directory:
        assert directory is not None and directory.parent == tmp
        assert directory.name.startswith(f"{PREFIX}{os.getpid()}-")
        assert os.environ[ENV] == str(directory)
        assert list(directory.iterdir()) == []
    assert not directory.exists()
    assert ENV not in os.environ


def test_one_worker_keeps_its_registry_in_memory(tmp, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp))  # inherited from the caller's shell
    with metrics_directory(1) as directory:
        assert directory is None
        assert ENV not in os.environ
    assert list(tmp.iterdir()) == []


def test_directories_of_servers_that_are_gone_are_removed_at_start(tmp):
    gone = tmp / f"{PREFIX}{dead_pid()}-abc"
    restarted = tmp / f"{PREFIX}{os.getpid()}-def"  # a container restart reuses the pid
    running = tmp / f"{PREFIX}{os.getppid()}-ghi"  # another server, still running
    unrelated = tmp / "pytest-of-someone"
    for path in (gone, restarted, running, unrelated):
        path.mkdir()
        write(path / "counter_1.db", "mlops_http_requests_total", 1000.0)
    with metrics_directory(2) as directory:
        assert directory is not None
        assert sorted(p.name for p in tmp.iterdir()) == sorted(
            [directory.name, running.name, unrelated.name]
        )
    assert sorted(remove_leftovers(tmp)) == []  # nothing left to remove
    assert running.exists() and unrelated.exists()


def test_a_dead_workers_queue_depth_leaves_the_sum_and_its_counts_stay(tmp):
    gone, alive = dead_pid(), os.getpid()
    for pid, depth in ((gone, 7.0), (alive, 3.0)):
        write(tmp / f"gauge_livesum_{pid}.db", "mlops_prediction_log_queue_depth", depth)
        write(tmp / f"counter_{pid}.db", "mlops_http_requests_total", 10.0)

    def summed() -> dict[str, float]:
        files = [str(p) for p in tmp.glob("*.db")]
        return {s.name: s.value for m in MultiProcessCollector.merge(files) for s in m.samples}

    assert summed() == {"mlops_prediction_log_queue_depth": 10.0, "mlops_http_requests_total": 20.0}
    assert forget_dead_workers(tmp) == [gone]
    assert summed() == {"mlops_prediction_log_queue_depth": 3.0, "mlops_http_requests_total": 20.0}
    assert forget_dead_workers(tmp) == []
