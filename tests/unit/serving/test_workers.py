"""`mlops serve api`'s worker count for MLOPS_API_WORKERS=0 ("auto"): one per usable CPU.

The cgroup quota is read from a file given to the function (the machine's own cpu.max may not
exist, or set no quota), the affinity is this process's real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_stack.serving.workers import AUTO, AUTO_CAP, quota_cpus, usable_cpus, worker_count


@pytest.mark.parametrize(
    ("line", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000", 2), ("50000 100000", 1)],
)
def test_a_cgroup_quota_is_rounded_up_to_whole_cpus(line: str, cpus: int | None) -> None:
    assert quota_cpus(line) == cpus


def test_auto_is_one_worker_per_cpu_of_the_affinity_without_a_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path / "absent") == affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert worker_count(AUTO, tmp_path / "cpu.max") == min(affinity, AUTO_CAP)


def test_a_quota_below_the_affinity_lowers_auto(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one CPU's worth, however many cores
    assert worker_count(AUTO, tmp_path / "cpu.max") == 1


def test_an_explicit_count_is_kept(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert worker_count(3, tmp_path / "cpu.max") == 3
