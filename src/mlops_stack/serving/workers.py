"""How many uvicorn worker processes `mlops serve api` runs when asked for "auto" (0).

One worker is one Python process, which uses one core at a time (the GIL): a predictor with
one worker on a 4-core machine leaves 3 cores idle. "Auto" runs one worker per CPU this
process may really use, which is the smaller of:

- the CPUs it is allowed to run on (``os.sched_getaffinity``: ``taskset``,
  ``docker --cpuset-cpus``),
- the cgroup's CPU quota, rounded up (``/sys/fs/cgroup/cpu.max``, cgroup v2; what compose's
  ``deploy.resources.limits.cpus`` and ``docker --cpus`` set). ``os.cpu_count()`` ignores both,
  so a container limited to 2 CPUs on a 64-core host would otherwise start 64 workers,

capped at :data:`AUTO_CAP`: each worker holds its own copy of the model and imports the
stack at start (about 0.25 GB and a few seconds each), and beyond a handful of workers
replicas behind nginx scale better than one big process tree.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

AUTO = 0
"""The ``api_workers`` value that means: one per usable CPU."""
AUTO_CAP = 8
"""Most workers "auto" starts; an explicit ``--workers`` / MLOPS_API_WORKERS may ask for more."""
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def quota_cpus(cpu_max: str) -> int | None:
    """The CPUs a cgroup v2 ``cpu.max`` line allows (``"150000 100000"`` -> 2), rounded up
    so that a fractional quota still gets a worker; None when it sets no quota (``"max ..."``)."""
    parts = cpu_max.split()
    if not parts or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1]) if len(parts) > 1 else 100_000
    return max(1, math.ceil(quota / period))


def usable_cpus(cpu_max: Path = CPU_MAX) -> int:
    """CPUs this process may use: its affinity, lowered to its cgroup's quota if one is set."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota = quota_cpus(cpu_max.read_text())
    except (OSError, ValueError):  # no cgroup v2 file here (cgroup v1, not Linux): no quota
        quota = None
    return min(cpus, quota) if quota is not None else cpus


def worker_count(requested: int, cpu_max: Path = CPU_MAX) -> int:
    """``requested`` workers, or for :data:`AUTO` one per usable CPU up to :data:`AUTO_CAP`."""
    if requested != AUTO:
        return requested
    return max(1, min(usable_cpus(cpu_max), AUTO_CAP))
