"""Whether a process still runs: files named after their writer's pid (the prediction spool's
segments, the metrics directory's per-worker files) are cleaned up when that writer is gone."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
