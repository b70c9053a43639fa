"""The restart policy of `whisperstream up`, driven by a fake clock."""

from __future__ import annotations

from whisperstream.supervisor.policy import CrashHistory, GiveUp, Restart, RestartPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _crash_after(history: CrashHistory, clock: FakeClock, ran_s: float) -> Restart | GiveUp:
    started_at = clock.now
    return history.crashed(started_at=started_at, now=clock.advance(ran_s))


def test_delays_start_at_one_second_and_double_up_to_thirty() -> None:
    # a window so long that nothing gives up: only the backoff is under test here
    history = CrashHistory(RestartPolicy(max_crashes=100))
    clock = FakeClock()
    delays = []
    for _ in range(8):
        decision = _crash_after(history, clock, 0.5)
        assert isinstance(decision, Restart)
        delays.append(decision.delay_s)
        clock.advance(decision.delay_s)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_fifth_crash_within_five_minutes_gives_up() -> None:
    history = CrashHistory()
    clock = FakeClock()
    decisions = []
    for _ in range(5):
        decisions.append(_crash_after(history, clock, 2))
        clock.advance(10)
    assert [type(d) for d in decisions] == [Restart] * 4 + [GiveUp]
    assert decisions[-1] == GiveUp(crashes_in_window=5)


def test_crashes_older_than_the_window_are_forgotten() -> None:
    history = CrashHistory()
    clock = FakeClock()
    for _ in range(4):
        assert isinstance(_crash_after(history, clock, 1), Restart)
        clock.advance(20)
    # the first four lie more than five minutes back when the next ones come
    clock.advance(301)
    decision = _crash_after(history, clock, 1)
    assert isinstance(decision, Restart)
    assert decision.crashes_in_window == 1


def test_a_healthy_run_resets_the_backoff() -> None:
    history = CrashHistory()
    clock = FakeClock()
    first = _crash_after(history, clock, 1)
    second = _crash_after(history, clock, 1)
    third = _crash_after(history, clock, 1)
    assert [d.delay_s for d in (first, second, third) if isinstance(d, Restart)] == [1, 2, 4]
    # ran for a minute before this crash: back to one second
    after_healthy = _crash_after(history, clock, 60)
    assert after_healthy == Restart(delay_s=1, crashes_in_window=4)


def test_a_run_just_short_of_healthy_keeps_doubling() -> None:
    history = CrashHistory()
    clock = FakeClock()
    _crash_after(history, clock, 1)
    decision = _crash_after(history, clock, 59.9)
    assert decision == Restart(delay_s=2, crashes_in_window=2)
