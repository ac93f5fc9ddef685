"""Spool files: where a sink puts the rows its destination cannot take right now.

Records are JSON lines in segment files under one directory, shared by every process that
writes there (the workers of one server, and the replicas of the prod stack, each in its own
container over the same volume). A segment is written as ``<time>-<owner>-<seq>.part``, renamed
``.jsonl`` when sealed (full, or when the sink wants to replay it, or at stop) and renamed
``.replay-<owner>`` by whoever replays it. A segment is deleted only after all its lines were
delivered. Replay may therefore deliver a line twice, never zero times; the log store's writes
are idempotent, so twice is harmless.

Who owns a segment is decided by a lock, not by a process id: the writer of a ``.part`` and the
replayer of a ``.replay-*`` hold an exclusive ``flock`` on it for as long as they use it. The
kernel drops the lock when its holder dies, however it dies, so a segment whose lock can be taken
has no owner any more and is adopted (:meth:`Spool.recover`). A pid could not say that: two
containers have their own pid namespaces (both may be pid 7), and a pid is reused. The lock is
the kernel's, so it holds across containers on one host's volume; a network filesystem must
support ``flock`` (NFSv4 does, through its byte-range locks).

Appends are one ``write`` to a file opened with ``O_APPEND`` (no buffer in this process), so a
line is in the OS's page cache when :meth:`Spool.append` returns: a killed process loses
nothing it appended. :meth:`Spool.sync` puts it on disk (the sink calls it at most once a
second), so a power loss costs at most about a second of spooled rows, as Redis's
``appendfsync everysec`` does for the stream.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
import time
from itertools import count
from pathlib import Path

from mlops_stack.logs import get_logger

log = get_logger(__name__)

SEGMENT_ROWS = 10_000
SEGMENTS = "[0-9]*"
"""Segment names start with their time: other files in the directory (``rejected.jsonl``, a
probe) are never replayed or adopted."""
SYNC_SECONDS = 1.0


def _lock(fd: int) -> bool:
    """Take the exclusive lock on an open file without waiting; False if someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_locked(path: Path) -> int | None:
    """``path`` opened and locked by us, or None if it is gone or someone else holds it.

    The name is checked to still be the locked file: a segment renamed or replaced between the
    open and the lock belongs to whoever did that.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _lock(fd) and os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


def _read_lines(fd: int) -> list[str]:
    with os.fdopen(os.dup(fd), encoding="utf-8", errors="replace") as handle:
        handle.seek(0)
        return [line.rstrip("\n") for line in handle if line.strip()]


class Spool:
    """Append-only JSON-lines segments with a replay cursor; thread-safe."""

    def __init__(self, directory: Path, segment_rows: int = SEGMENT_ROWS) -> None:
        self.directory = directory
        self.segment_rows = segment_rows
        self.owner = f"{os.getpid()}x{secrets.token_hex(4)}"  # a name, not a liveness test
        self._lock = threading.RLock()
        self._seq = count()
        self._active: int | None = None  # fd of the .part being written, locked
        self._active_path: Path | None = None
        self._active_rows = 0
        self._unsynced = False
        self._last_sync = 0.0
        self._sealed: dict[str, int] = {}  # sealed segments this spool knows of -> rows
        self._replay: int | None = None  # fd of the segment being replayed, locked
        self._replay_path: Path | None = None
        self._replay_lines: list[str] = []
        self._replay_offset = 0

    # --- life cycle ------------------------------------------------------------------------
    def recover(self) -> int:
        """Open the spool and adopt segments nobody holds; returns rows waiting.

        Raises ``OSError`` when the directory cannot be made or read.
        """
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            for pattern in (f"{SEGMENTS}.part", f"{SEGMENTS}.replay-*"):
                for path in self.directory.glob(pattern):
                    self._adopt(path)
            for path in self.directory.glob(f"{SEGMENTS}.jsonl"):
                if path.name not in self._sealed:
                    self._sealed[path.name] = _count_lines(path)
            return self.rows()

    def _adopt(self, path: Path) -> None:
        """Make a segment whose owner is gone (its lock is free) replayable."""
        fd = _open_locked(path)
        if fd is None:
            return  # its owner is alive, or another process adopted it first
        try:
            base = path.name.rsplit(".replay-", 1)[0] if ".replay-" in path.name else path.stem
            target = path.with_name(base.removesuffix(".jsonl") + ".jsonl")
            path.rename(target)  # while holding the lock: nobody else can adopt it meanwhile
        finally:
            os.close(fd)
        log.info("spool.adopted", segment=target.name)

    def close(self) -> None:
        """Seal the active segment and give up the replay claim, for the next start to find."""
        with self._lock:
            self.seal()
            if self._replay_path is not None:
                self._release_replay()

    # --- writing ---------------------------------------------------------------------------
    def append(self, lines: list[str]) -> None:
        """Append lines to the active segment, in the OS's cache on return (``OSError`` if the
        disk refuses; then nothing of them is kept)."""
        if not lines:
            return
        data = "".join(f"{line}\n" for line in lines).encode()
        with self._lock:
            fd = self._active if self._active is not None else self._open_segment()
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                self._abandon_tail(fd, size)
                raise
            self._active_rows += len(lines)
            self._unsynced = True
            if self._active_rows >= self.segment_rows:
                self.seal()

    def _open_segment(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{self.owner}-{next(self._seq):06d}.part"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        _lock(fd)  # a new file: nobody else can hold it
        self._active, self._active_path, self._active_rows = fd, path, 0
        return fd

    def _abandon_tail(self, fd: int, size: int) -> None:
        """After a failed append: cut what was half written, and start a new segment next time,
        so that no later line is glued to a partial one."""
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            log.error("spool.truncate_failed", segment=str(self._active_path), error=str(exc))
        try:
            self.seal()
        except OSError as exc:
            log.error("spool.seal_failed", segment=str(self._active_path), error=str(exc))
            os.close(fd)
            self._active, self._active_path, self._active_rows = None, None, 0

    def seal(self) -> None:
        """Close the active segment and make it replayable."""
        with self._lock:
            if self._active is None or self._active_path is None:
                return
            target = self._active_path.with_suffix(".jsonl")
            self._active_path.rename(target)  # renamed before the lock goes with the close
            os.close(self._active)
            if self._active_rows:
                self._sealed[target.name] = self._active_rows
            else:
                target.unlink(missing_ok=True)
            self._active, self._active_path, self._active_rows = None, None, 0

    def sync_due(self) -> bool:
        """Whether appended lines wait for :meth:`sync` and the last one is a second old."""
        return self._unsynced and time.monotonic() - self._last_sync >= SYNC_SECONDS

    def sync(self) -> None:
        """Put the active segment's lines on disk (``fsync``), outside the append lock."""
        with self._lock:
            if self._active is None or not self._unsynced:
                return
            fd = os.dup(self._active)
            self._unsynced = False
            self._last_sync = time.monotonic()
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def writable(self) -> tuple[bool, str]:
        """Whether a line could be appended now, by writing and removing a probe file."""
        probe = self.directory / f".probe-{self.owner}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, b"{}\n")
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"spool {self.directory} writable"

    # --- replay ----------------------------------------------------------------------------
    def rows(self) -> int:
        """Rows waiting in this spool: active and sealed segments and the rest of the replay."""
        with self._lock:
            replaying = len(self._replay_lines) - self._replay_offset
            return self._active_rows + sum(self._sealed.values()) + replaying

    def peek(self, size: int) -> list[str]:
        """The next lines to replay (empty when nothing waits); :meth:`consume` after delivery."""
        with self._lock:
            if self._replay_path is None and not self._claim_next():
                return []
            return self._replay_lines[self._replay_offset : self._replay_offset + size]

    def consume(self, count_: int) -> None:
        """Mark the first ``count_`` peeked lines delivered; a finished segment is deleted."""
        with self._lock:
            self._replay_offset += count_
            if self._replay_path is not None and self._replay_offset >= len(self._replay_lines):
                self._replay_path.unlink(missing_ok=True)
                log.info("spool.replayed", segment=self._replay_path.name)
                self._end_replay()

    def _end_replay(self) -> None:
        if self._replay is not None:
            os.close(self._replay)  # after the unlink or rename: the lock goes last
        self._replay, self._replay_path, self._replay_lines, self._replay_offset = None, None, [], 0

    def _claim_next(self) -> bool:
        """Claim the oldest sealed segment (sealing the active one if none); False if none."""
        if not self.directory.is_dir():
            return False
        present = {path.name for path in self.directory.glob(f"{SEGMENTS}.jsonl")}
        for gone in set(self._sealed) - present:  # replayed by another process meanwhile
            del self._sealed[gone]
        for attempt in range(2):
            for path in sorted(self.directory.glob(f"{SEGMENTS}.jsonl")):
                if self._claim(path):
                    if self._replay_lines:
                        return True
                    self.consume(0)  # an empty segment: delete it and look further
            if attempt == 0 and self._active_rows:
                self.seal()
            else:
                break
        return False

    def _claim(self, path: Path) -> bool:
        """Lock a sealed segment, then rename it ours; False if another process has it."""
        self._sealed.pop(path.name, None)
        fd = _open_locked(path)
        if fd is None:
            return False
        claimed = path.with_name(f"{path.name}.replay-{self.owner}")
        try:
            path.rename(claimed)
            lines = _read_lines(fd)
        except OSError:
            os.close(fd)
            return False
        self._replay, self._replay_path = fd, claimed
        self._replay_lines, self._replay_offset = lines, 0
        return True

    def _release_replay(self) -> None:
        """Hand the segment being replayed back, minus the lines already delivered."""
        assert self._replay_path is not None
        rest = self._replay_lines[self._replay_offset :]
        base = self._replay_path.name.rsplit(".replay-", 1)[0]
        target = self._replay_path.with_name(base)
        if rest:
            partial = self._replay_path.with_name(f"{base}.tmp-{self.owner}")
            partial.write_text("".join(f"{line}\n" for line in rest), encoding="utf-8")
            partial.rename(target)
            self._sealed[target.name] = len(rest)
        self._replay_path.unlink(missing_ok=True)
        self._end_replay()


def _count_lines(path: Path) -> int:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0
