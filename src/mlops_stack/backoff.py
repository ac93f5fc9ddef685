"""How long to wait before trying again, and the wait itself, interruptible by a stop event.

The log sinks, the stream writer and the worker all retry a service that is down; they share
this one rule instead of three hand-written loops: the delay grows after each failure (by a
factor up to a cap, or along a fixed schedule whose last step repeats), a success resets it,
and a wait ends early when the caller's stop event is set. An optional deadline says when
waiting longer is pointless (:meth:`Backoff.expired`).

Typical loop::

    backoff = Backoff.exponential(0.1, 5.0)
    while not stop.is_set():
        try:
            work()
        except Exception:
            backoff.wait(stop)
        else:
            backoff.reset()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


class Backoff:
    """A delay policy with its state: how many failures came since the last reset.

    After ``n`` failures the delay is ``first * factor ** n`` capped at ``cap``, or, with a
    ``schedule``, ``schedule[n]`` with the last entry repeated. ``give_up_after`` seconds
    (counted from construction on ``clock``) set a deadline that no wait should cross.
    """

    def __init__(
        self,
        first: float = 0.1,
        cap: float = 5.0,
        factor: float = 2.0,
        *,
        schedule: Sequence[float] | None = None,
        give_up_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if schedule is not None:
            if not schedule or min(schedule) < 0:
                raise ValueError(f"a schedule needs delays of at least 0 s, not {schedule!r}")
        elif first < 0 or cap < first or factor < 1:
            raise ValueError(
                f"need 0 <= first <= cap and factor >= 1, not {first}, {cap}, {factor}"
            )
        self.first, self.cap, self.factor = first, cap, factor
        self.schedule = None if schedule is None else tuple(schedule)
        self._clock = clock
        self.deadline = None if give_up_after is None else clock() + give_up_after
        self.failures = 0  # failures since the last reset
        self._step = 0  # index into the schedule, or exponent of the factor

    @classmethod
    def exponential(
        cls,
        first: float,
        cap: float,
        factor: float = 2.0,
        *,
        give_up_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Backoff:
        """``first``, ``first * factor``, ... up to ``cap``, then ``cap`` again and again."""
        return cls(first, cap, factor, give_up_after=give_up_after, clock=clock)

    @classmethod
    def fixed(
        cls,
        schedule: Sequence[float],
        *,
        give_up_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Backoff:
        """The delays of ``schedule`` in turn, then its last one again and again."""
        return cls(schedule=schedule, give_up_after=give_up_after, clock=clock)

    @property
    def upcoming(self) -> float:
        """The delay the next :meth:`next_delay` (or :meth:`wait`) uses, without using it."""
        if self.schedule is not None:
            return self.schedule[self._step]
        return min(self.first * self.factor**self._step, self.cap)

    def next_delay(self) -> float:
        """The delay to wait after this failure; the one after it will be longer (to the cap)."""
        delay = self.upcoming
        self.failures += 1
        if self.schedule is not None:
            self._step = min(self._step + 1, len(self.schedule) - 1)
        elif delay < self.cap and self.factor > 1 and self.first > 0:
            self._step += 1  # stops growing at the cap: a long outage cannot overflow it
        return delay

    def reset(self) -> None:
        """A success: the next failure waits the first delay again (the deadline stays)."""
        self.failures = self._step = 0

    def expired(self) -> bool:
        """Whether waiting the upcoming delay would pass the deadline (never without one)."""
        return self.deadline is not None and self._clock() + self.upcoming > self.deadline

    def wait(self, stop: threading.Event) -> bool:
        """Wait the next delay, or less if ``stop`` is set meanwhile; returns whether it is set."""
        return stop.wait(self.next_delay())
