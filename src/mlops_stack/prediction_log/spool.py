"""Spool files: where a sink puts records that memory cannot hold while its destination is down.

Records are JSON lines in segment files under one directory. A segment is written as
``<time>-<owner>-<seq>.part``, renamed ``.jsonl`` when sealed (full, or when the sink wants to
replay it, or at stop) and renamed ``.replay-<owner>`` by whoever replays it, which is how two
processes sharing the directory (several predictor workers) never replay the same file. A
segment is deleted only after all its lines were delivered; a process that dies leaves its
segments to the next one that starts (:meth:`Spool.recover`). Replay may therefore deliver a
line twice, never zero times; the log store's writes are idempotent, so twice is harmless.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from itertools import count
from pathlib import Path
from typing import IO

from mlops_stack.logs import get_logger
from mlops_stack.processes import process_alive

log = get_logger(__name__)

SEGMENT_ROWS = 10_000
# Owners (pid, token) of the spools open in this process: their files are not adopted.
_LIVE: set[str] = set()


def _owner_alive(owner: str) -> bool:
    pid_text, _, _token = owner.partition("x")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner in _LIVE
    return process_alive(pid)


def _owner_of(path: Path) -> str:
    """The owner recorded in a segment's name (writer for .part, replayer for .replay-*)."""
    if ".replay-" in path.name:
        return path.name.rsplit(".replay-", 1)[1]
    parts = path.name.split("-")
    return parts[1] if len(parts) >= 3 else ""


def _read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


class Spool:
    """Append-only JSON-lines segments with a replay cursor; thread-safe."""

    def __init__(self, directory: Path, segment_rows: int = SEGMENT_ROWS) -> None:
        self.directory = directory
        self.segment_rows = segment_rows
        self.owner = f"{os.getpid()}x{secrets.token_hex(4)}"
        self._lock = threading.RLock()
        self._seq = count()
        self._active: IO[str] | None = None
        self._active_path: Path | None = None
        self._active_rows = 0
        self._sealed: dict[str, int] = {}  # sealed segments this spool knows of -> rows
        self._replay_path: Path | None = None
        self._replay_lines: list[str] = []
        self._replay_offset = 0

    # --- life cycle ------------------------------------------------------------------------
    def recover(self) -> int:
        """Open the spool and adopt segments whose owner is gone; returns rows waiting."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            _LIVE.add(self.owner)
            for path in [*self.directory.glob("*.part"), *self.directory.glob("*.replay-*")]:
                if not _owner_alive(_owner_of(path)):
                    self._adopt(path)
            for path in self.directory.glob("*.jsonl"):
                self._sealed.setdefault(path.name, len(_read_lines(path)))
            return self.rows()

    def _adopt(self, path: Path) -> None:
        base = path.name.rsplit(".replay-", 1)[0] if ".replay-" in path.name else path.stem
        target = path.with_name(base.removesuffix(".jsonl") + ".jsonl")
        try:
            path.rename(target)
        except FileNotFoundError:
            return  # another process adopted it first
        log.info("spool.adopted", segment=target.name)

    def close(self) -> None:
        """Seal the active segment and give up the replay claim, for the next start to find."""
        with self._lock:
            self.seal()
            if self._replay_path is not None:
                self._release_replay()
            _LIVE.discard(self.owner)

    # --- writing ---------------------------------------------------------------------------
    def append(self, lines: list[str]) -> None:
        """Append lines to the active segment (raises ``OSError`` if the disk refuses)."""
        if not lines:
            return
        with self._lock:
            if self._active is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                name = f"{time.time_ns():020d}-{self.owner}-{next(self._seq):06d}.part"
                self._active_path = self.directory / name
                self._active = self._active_path.open("a", encoding="utf-8")
            self._active.write("".join(f"{line}\n" for line in lines))
            self._active.flush()
            self._active_rows += len(lines)
            if self._active_rows >= self.segment_rows:
                self.seal()

    def seal(self) -> None:
        """Close the active segment and make it replayable."""
        with self._lock:
            if self._active is None or self._active_path is None:
                return
            self._active.close()
            target = self._active_path.with_suffix(".jsonl")
            self._active_path.rename(target)
            self._sealed[target.name] = self._active_rows
            self._active, self._active_path, self._active_rows = None, None, 0

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
                self._replay_path, self._replay_lines, self._replay_offset = None, [], 0

    def _claim_next(self) -> bool:
        """Claim the oldest sealed segment (sealing the active one if none); False if none."""
        present = {path.name for path in self.directory.glob("*.jsonl")}
        for gone in set(self._sealed) - present:  # replayed by another process meanwhile
            del self._sealed[gone]
        for attempt in range(2):
            for path in sorted(self.directory.glob("*.jsonl")):
                claimed = path.with_name(f"{path.name}.replay-{self.owner}")
                try:
                    path.rename(claimed)
                except FileNotFoundError:
                    self._sealed.pop(path.name, None)  # another process took it
                    continue
                self._sealed.pop(path.name, None)
                self._replay_path, self._replay_offset = claimed, 0
                self._replay_lines = _read_lines(claimed)
                if not self._replay_lines:
                    self.consume(0)
                    continue
                return True
            if attempt == 0 and self._active_rows:
                self.seal()
            else:
                break
        return False

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
        self._replay_path, self._replay_lines, self._replay_offset = None, [], 0
