"""The spool shared by processes that cannot see each other's pids (replicas in containers).

Ownership is an flock on each segment in use, not the pid in its name: here the owner process
names its segments after a pid that is dead (what another container's pid looks like from this
one), and its segments must still not be adopted while it lives, and must be once it is killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlops_stack
from mlops_stack.prediction_log.spool import Spool

# the code under test in the child processes too, not an installed copy
ENV = {**os.environ, "PYTHONPATH": str(Path(mlops_stack.__file__).resolve().parents[1])}

OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mlops_stack.prediction_log.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    spool.owner = f"{sys.argv[2]}xother"  # a pid that means nothing here, as across containers
    spool.recover()
    spool.append([f'{{"n": {n}}}' for n in range(3)])
    spool.seal()
    spool.append([f'{{"n": {n}}}' for n in range(3, 5)])
    spool.seal()
    assert [line for line in spool.peek(10)] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    spool.append([f'{{"n": {n}}}' for n in range(5, 9)])  # the active segment, being written
    print("holding", flush=True)
    sys.stdin.read()  # until killed
    """
)


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    return gone.pid


def drain(spool: Spool) -> list[str]:
    lines = []
    while batch := spool.peek(100):
        lines += batch
        spool.consume(len(batch))
    return lines


def test_segments_of_a_live_owner_are_not_adopted_whatever_their_pid_and_are_once_it_dies(
    tmp_path: Path,
):
    directory = tmp_path / "spool"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(directory), str(dead_pid())],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "holding\n"
        names = sorted(path.name.rsplit(".", 1)[-1].split("-")[0] for path in directory.iterdir())
        assert names == ["jsonl", "part", "replay"]  # sealed, being written, being replayed

        other = Spool(directory)
        other.recover()
        # only the sealed segment nobody holds: the owner's active and replayed ones stay its own
        assert drain(other) == ['{"n": 3}', '{"n": 4}']
        assert sorted(p.suffix.split("-")[0] for p in directory.iterdir()) == [".part", ".replay"]
        other.close()
    finally:
        owner.kill()  # SIGKILL: the kernel drops its locks, nothing else is told
        owner.wait(timeout=30)

    heir = Spool(directory)
    assert heir.recover() == 7  # 3 being replayed and 4 being written, adopted
    assert sorted(drain(heir)) == sorted(f'{{"n": {n}}}' for n in [0, 1, 2, 5, 6, 7, 8])
    heir.close()
    assert list(directory.iterdir()) == []


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from mlops_stack.prediction_log.spool import Spool

    spool = Spool(Path(sys.argv[1]))
    spool.recover()
    spool.append(['{"n": 0}'])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20, hard))  # the disk fills up mid-write
    try:
        spool.append(['{"n": "a long line that does not fit"}'])
    except OSError as exc:
        print("errno", exc.errno, flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    spool.append(['{"n": 1}'])
    lines = []
    while batch := spool.peek(100):
        lines += batch
        spool.consume(len(batch))
    print("lines", lines)
    """
)


def test_a_failed_append_keeps_nothing_of_it_and_the_next_append_starts_clean(tmp_path: Path):
    """A write cut short (EFBIG here, ENOSPC on a full disk) leaves no half line for the next
    append to be glued to: the rows after it are whole."""
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        check=True,
    )
    said = [line for line in result.stdout.splitlines() if line.startswith(("errno", "lines"))]
    assert said == ["errno 27", """lines ['{"n": 0}', '{"n": 1}']"""]


def test_other_files_in_the_directory_are_never_replayed(tmp_path: Path):
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "rejected.jsonl").write_text('{"kept": "for a person"}\n')
    spool = Spool(directory)
    assert spool.recover() == 0
    spool.append(['{"n": 0}'])
    assert drain(spool) == ['{"n": 0}']
    assert (directory / "rejected.jsonl").exists()
    spool.close()


def test_writable_says_why_not(tmp_path: Path):
    (tmp_path / "spool").write_text("a file where the directory should be")
    ok, detail = Spool(tmp_path / "spool").writable()
    assert not ok and "FileExistsError" in detail
    ok, _ = Spool(tmp_path / "elsewhere").writable()
    assert ok
