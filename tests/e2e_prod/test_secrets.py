"""What `docker inspect` and the secrets directory show of the running prod stack.

No development default and no URL holding a password in any container's environment (nor in
`docker compose config` of the production files); every secret file 0600 and owned by the user
of the container that mounts it (infrastructure/prod/secret-owners.sh); a pids limit on every
container, as docker-compose.prod.yml sets it, with room above what the container runs now.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e_prod.conftest import compose

DEV_MARKER = "mlops-dev-only"
# scheme://user:password@host: a URL that carries a password
PASSWORD_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
# a container's pids now, at most this share of its limit: room for a burst of threads
HEADROOM = 2


def containers() -> list[dict[str, Any]]:
    """`docker inspect` of every container of the stack (profiles and backup included)."""
    ids = compose("ps", "-q").stdout.split()
    assert ids, "no container of the prod stack is running"
    done = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(done.stdout))


def service(container: dict[str, Any]) -> str:
    return str(container["Config"]["Labels"]["com.docker.compose.service"])


def leaks(text: str) -> list[str]:
    """The development marker and every URL with a password in ``text``."""
    return [DEV_MARKER] * (DEV_MARKER in text) + PASSWORD_URL.findall(text)


def test_no_development_default_or_password_in_a_url_in_any_environment():
    config = compose("--profile", "*", "config").stdout
    assert not leaks(config), f"docker compose config shows {leaks(config)}"
    found = {}
    for container in containers():
        for variable in container["Config"]["Env"] or []:
            if leaks(variable):
                found.setdefault(service(container), []).append(variable.split("=", 1)[0])
    assert not found, f"variables holding a development default or a password URL: {found}"


def test_every_secret_file_is_0600_and_belongs_to_the_user_that_reads_it(secrets_dir: Path):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets_dir.iterdir()}
    assert modes and all(mode == 0o600 for mode in modes.values()), {
        name: oct(mode) for name, mode in modes.items()
    }
    mounted = 0
    for container in containers():
        uid = compose("exec", "-T", service(container), "id", "-u").stdout.strip()
        for mount in container["Mounts"]:
            if not mount["Destination"].startswith("/run/secrets/"):
                continue
            source = Path(mount["Source"])
            assert source.parent.resolve() == secrets_dir.resolve(), mount
            owner = source.stat().st_uid
            assert str(owner) == uid, f"{service(container)} runs as {uid}, {source} is {owner}'s"
            mounted += 1
    assert mounted >= 10  # every service's secrets, not a vacuous pass


def current_pids() -> dict[str, int]:
    ids = compose("ps", "-q").stdout.split()
    done = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.ID}} {{.PIDs}}", *ids],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()}


def test_every_container_has_the_pids_limit_of_the_compose_file():
    declared = json.loads(compose("--profile", "*", "config", "--format", "json").stdout)
    running = current_pids()
    for container in containers():
        name = service(container)
        limits = declared["services"][name]["deploy"]["resources"]["limits"]
        limit = container["HostConfig"]["PidsLimit"]
        assert limit == int(limits["pids"]), f"{name}: PidsLimit {limit}, compose {limits}"
        pids = running[container["Id"][:12]]
        assert pids * HEADROOM <= limit, f"{name} runs {pids} pids, limit {limit}"
