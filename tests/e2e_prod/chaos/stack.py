"""The prod stack seen from the operator's seat: containers, health, crashes, rows, nginx's state.

Everything goes through the `docker` and `docker compose` CLIs (COMPOSE_FILE and
COMPOSE_PROJECT_NAME as compose-e2e.sh's prod stage sets them), so it works for root and for a
user in the docker group alike.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from tests.e2e_prod.conftest import REPO, compose, psql


def docker(*args: str, check: bool = True, timeout: float = 120, **kwargs: Any) -> str:
    """`docker ARGS`; its stdout."""
    done = subprocess.run(
        ["docker", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@cache
def config() -> dict[str, Any]:
    """The stack's resolved compose configuration (profiles and images as the stage set them)."""
    return json.loads(compose("config", "--format", "json").stdout)


def image_of(service: str) -> str:
    return str(config()["services"][service]["image"])


def containers(service: str) -> list[str]:
    """Ids of the service's running containers (one per replica)."""
    return compose("ps", "-q", service).stdout.split()


def inspect(container: str) -> dict[str, Any]:
    return json.loads(docker("inspect", container))[0]


def _ps() -> list[dict[str, Any]]:
    out = compose("ps", "-a", "--format", "json").stdout.strip()
    if out.startswith("["):  # compose < 2.21 prints one array
        return list(json.loads(out))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _moment(text: str) -> datetime:
    """Docker's RFC 3339 times (nanoseconds, Z) as datetimes."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def _problem(state: dict[str, Any]) -> str | None:
    """Why a container is not healthy, or None. A health status counts only when checked since
    the container's last start: Docker keeps the old status across a restart."""
    status = state["State"]
    one_shot = state["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
    if status["Status"] == "exited" and one_shot and status["ExitCode"] == 0:
        return None  # a one-shot service that did its job (nginx-temp)
    if status["Status"] != "running":
        return status["Status"]
    health = status.get("Health")
    if health is None:
        return None
    checked = [_moment(entry["Start"]) for entry in health.get("Log") or []]
    if not checked or max(checked) < _moment(status["StartedAt"]):
        return "not checked since its start"
    return None if health["Status"] == "healthy" else health["Status"]


def not_healthy() -> list[str]:
    """What keeps the stack from being all healthy: containers not running and healthy (or
    running, when they have no healthcheck), and services with no container at all."""
    entries = _ps()
    states = json.loads(docker("inspect", *(e["ID"] for e in entries))) if entries else []
    problems = [f"{s['Name'].lstrip('/')}: {p}" for s in states if (p := _problem(s))]
    present = {e["Service"] for e in entries}
    problems += [f"{s}: no container" for s in sorted(set(config()["services"]) - present)]
    return problems


def wait_healthy(timeout: float) -> float:
    """Seconds until every container is healthy; fails after ``timeout`` naming what is not."""
    started = time.monotonic()
    deadline = started + timeout
    while problems := not_healthy():
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {timeout:.0f}s: {problems}")
        time.sleep(0.5)
    return time.monotonic() - started


def heal(timeout: float = 240) -> None:
    """Start from an all-healthy stack: wait for it, else start what was stopped and wait again,
    else `up -d` the configuration (the last resort after a fault's own cleanup failed)."""
    try:
        wait_healthy(min(timeout, 120))
        return
    except AssertionError as first:
        print(f"  healing the stack: {first}")
    compose("start", check=False)
    try:
        wait_healthy(60)
    except AssertionError:
        compose("up", "-d", "--wait", "--wait-timeout", str(int(timeout)), timeout=timeout + 60)
        wait_healthy(timeout)


def crash(container: str) -> None:
    """kill -9 of the container's main process, as a crash would: `docker kill` counts as a
    manual stop (no restart policy applies), a signal from the host does not. Sent from a
    throw-away container in the host's pid namespace, so no root on the host is needed."""
    pid = inspect(container)["State"]["Pid"]
    assert pid, f"{container} has no main process to kill"
    killer = image_of("api")  # the stack's own image: it is here, no registry needed
    started = inspect(container)["State"]["StartedAt"]
    docker(
        "run", "--rm", "--pid=host", "--user=0", "--cap-drop=ALL", "--cap-add=KILL",
        "--network=none", "--entrypoint=sh", killer, "-c", f"kill -KILL {pid}",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while (state := inspect(container)["State"])["Running"] and state["StartedAt"] == started:
        assert time.monotonic() < deadline, f"{container} still runs after kill -9 of {pid}"
        time.sleep(0.1)  # until Docker saw the crash: health checks before it would mislead


KILL_UVICORN_WORKER = """
import os, signal
workers = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        continue
    if b"spawn_main" in cmdline and int(pid) != os.getpid():  # this script names it too
        workers.append(int(pid))
if workers:
    os.kill(min(workers), signal.SIGKILL)
print(min(workers) if workers else 0)
"""


def kill_uvicorn_worker(container: str) -> int:
    """kill -9 of one uvicorn worker process (a child of the container's main process); 0
    when the replica runs one process (MLOPS_API_WORKERS=1), which has no worker to kill."""
    return int(docker("exec", container, "python", "-c", KILL_UVICORN_WORKER).strip())


def stored_ids(prefix: str) -> set[str]:
    """Request ids under ``prefix`` that have a row in the monitoring database's predictions."""
    out = psql(f"SELECT DISTINCT request_id FROM predictions WHERE request_id LIKE '{prefix}-%'")
    return set(out.split())


@dataclass(frozen=True)
class NginxState:
    """What tells a restart or an OOM kill of nginx, its master or one of its workers."""

    container: str
    started_at: str
    restarts: int
    oom_killed: bool
    workers: frozenset[int]
    oom_kills: int | None  # the cgroup's counter of OOM kills, where the kernel exposes it
    peak_mib: float | None  # the cgroup's peak memory use

    def describe(self) -> str:
        return (
            f"nginx started {self.started_at}, restarts {self.restarts}, OOMKilled "
            f"{self.oom_killed}, workers {sorted(self.workers)}, cgroup OOM kills "
            f"{self.oom_kills}, peak memory {self.peak_mib} MiB"
        )


def _cgroup_value(container: str, paths: tuple[str, ...], key: str | None) -> int | None:
    for path in paths:
        out = docker("exec", container, "cat", path, check=False)
        if not out:
            continue
        if key is None:
            return int(out.split()[0])
        for line in out.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


def nginx_state() -> NginxState:
    [container] = containers("nginx")
    state = inspect(container)
    top = docker("top", container, "-o", "pid,args").splitlines()[1:]
    workers = frozenset(int(line.split()[0]) for line in top if "worker process" in line)
    oom_kills = _cgroup_value(
        container,
        ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"),
        "oom_kill",
    )
    peak = _cgroup_value(
        container,
        ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"),
        None,
    )
    return NginxState(
        container=container,
        started_at=state["State"]["StartedAt"],
        restarts=state["RestartCount"],
        oom_killed=state["State"]["OOMKilled"],
        workers=workers,
        oom_kills=oom_kills,
        peak_mib=round(peak / 2**20, 1) if peak is not None else None,
    )


def nginx_held(before: NginxState, after: NginxState) -> list[str]:
    """How nginx did not hold between two states: empty when it kept running untouched."""
    broken = []
    if after.container != before.container or after.started_at != before.started_at:
        broken.append(f"nginx restarted (started {before.started_at} -> {after.started_at})")
    if after.restarts != before.restarts:
        broken.append(f"RestartCount {before.restarts} -> {after.restarts}")
    if after.oom_killed:
        broken.append("OOMKilled")
    if after.workers != before.workers:
        broken.append(
            f"worker processes replaced {sorted(before.workers)} -> {sorted(after.workers)}"
        )
    if (after.oom_kills or 0) > (before.oom_kills or 0):
        broken.append(f"cgroup OOM kills {before.oom_kills} -> {after.oom_kills}")
    return broken


def raise_open_files(wanted: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE to ``wanted`` (within the hard limit); the old one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = max(soft, wanted) if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    assert raised >= wanted, f"RLIMIT_NOFILE's hard limit {hard} is below {wanted}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return soft, hard
