"""The shared retry delay policy: growth, cap, schedule, reset, deadline and the stop event.

No test sleeps: the stop event records the timeouts it is asked to wait, and the clock is a
variable the test moves.
"""

from __future__ import annotations

import threading
from itertools import islice

import pytest

from mlops_stack.backoff import Backoff


class RecordingEvent(threading.Event):
    """An event whose wait returns at once, remembering how long it was asked to wait."""

    def __init__(self, set_after: int | None = None) -> None:
        super().__init__()
        self.waited: list[float | None] = []
        self.set_after = set_after  # set itself during this many-th wait (1-based)

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout)
        if self.set_after is not None and len(self.waited) >= self.set_after:
            self.set()
        return self.is_set()


def delays(backoff: Backoff, n: int) -> list[float]:
    return list(islice(iter(backoff.next_delay, None), n))


def test_exponential_doubles_up_to_the_cap_and_stays_there():
    backoff = Backoff.exponential(0.1, 5.0)
    assert delays(backoff, 9) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert backoff.failures == 9


def test_defaults_are_the_log_paths_0_1_to_5_seconds():
    assert delays(Backoff(), 7) == delays(Backoff.exponential(0.1, 5.0), 7)


def test_another_factor_and_a_cap_below_the_next_step():
    assert delays(Backoff.exponential(1.0, 20.0, factor=3.0), 5) == [1.0, 3.0, 9.0, 20.0, 20.0]


def test_a_long_outage_does_not_overflow():
    backoff = Backoff.exponential(1.0, 60.0, factor=10.0)
    for _ in range(10_000):
        backoff.next_delay()
    assert backoff.upcoming == 60.0


def test_fixed_schedule_repeats_its_last_step():
    backoff = Backoff.fixed((1, 2, 5, 10, 15))
    assert delays(backoff, 7) == [1, 2, 5, 10, 15, 15, 15]


def test_upcoming_does_not_advance():
    backoff = Backoff.fixed((1, 2))
    assert backoff.upcoming == backoff.upcoming == 1
    assert backoff.next_delay() == 1 and backoff.upcoming == 2


def test_reset_starts_again_from_the_first_delay():
    backoff = Backoff.exponential(0.1, 5.0)
    delays(backoff, 4)
    backoff.reset()
    assert backoff.failures == 0
    assert delays(backoff, 2) == [0.1, 0.2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": -1.0}, "first <= cap"),
        ({"first": 2.0, "cap": 1.0}, "first <= cap"),
        ({"factor": 0.5}, "factor >= 1"),
        ({"schedule": ()}, "schedule"),
        ({"schedule": (1.0, -1.0)}, "schedule"),
    ],
)
def test_nonsense_policies_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_wait_waits_the_next_delay_on_the_stop_event():
    stop = RecordingEvent()
    backoff = Backoff.exponential(0.5, 2.0)
    assert [backoff.wait(stop) for _ in range(4)] == [False] * 4
    assert stop.waited == [0.5, 1.0, 2.0, 2.0]


def test_wait_says_when_stop_was_set():
    stop = RecordingEvent(set_after=2)
    backoff = Backoff.exponential(0.1, 5.0)
    assert backoff.wait(stop) is False
    assert backoff.wait(stop) is True


def test_a_real_event_already_set_returns_at_once():
    stop = threading.Event()
    stop.set()
    assert Backoff.fixed((3600,)).wait(stop) is True


def test_no_deadline_never_expires():
    now = [0.0]
    backoff = Backoff.fixed((1, 2), clock=lambda: now[0])
    now[0] = 1e9
    assert not backoff.expired()


def test_the_deadline_counts_from_construction_and_looks_one_wait_ahead():
    now = [100.0]
    backoff = Backoff.fixed((1, 2, 5), give_up_after=4.0, clock=lambda: now[0])
    assert backoff.deadline == 104.0
    assert not backoff.expired()  # 100 + 1 <= 104
    now[0] += backoff.next_delay()
    assert not backoff.expired()  # 101 + 2 <= 104
    now[0] += backoff.next_delay()
    assert backoff.expired()  # 103 + 5 > 104
    backoff.reset()
    assert not backoff.expired()  # 103 + 1 <= 104: a reset keeps the deadline
