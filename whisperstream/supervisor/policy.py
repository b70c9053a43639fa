"""When to restart a crashed service and when to give up: a pure policy, no processes.

Each crash waits 1 s before the restart, doubling for each further crash up to 30 s; a
service that had run for `healthy_after_s` before it crashed starts again from 1 s.
The fifth crash of one service within five minutes gives up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 300.0
    healthy_after_s: float = 60.0


@dataclass(frozen=True)
class Restart:
    delay_s: float
    crashes_in_window: int


@dataclass(frozen=True)
class GiveUp:
    crashes_in_window: int


class CrashHistory:
    """The crashes of one service; times are seconds on any monotonic clock."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self._crashes: deque[float] = deque()
        self._streak = 0  # crashes since the service last ran healthily

    def crashed(self, *, started_at: float, now: float) -> Restart | GiveUp:
        """Record a crash of a run that started at `started_at`; what to do next."""
        policy = self.policy
        if now - started_at >= policy.healthy_after_s:
            self._streak = 0
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - policy.window_s:
            self._crashes.popleft()
        if len(self._crashes) >= policy.max_crashes:
            return GiveUp(len(self._crashes))
        delay = min(policy.first_delay_s * 2**self._streak, policy.max_delay_s)
        self._streak += 1
        return Restart(delay, len(self._crashes))
