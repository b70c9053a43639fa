"""A per-key token bucket, in memory per API process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


_MAX_BUCKETS = 100_000


class RateLimiter:
    """``rate`` requests per second on average, bursts up to ``burst``, per key."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, got {rate}, {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Take a token: 0.0 if allowed, else the seconds until one is available."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def wait_s(self, key: str) -> float:
        """Like :meth:`acquire` without taking a token: 0.0 if one is available."""
        if key not in self._buckets:
            return 0.0
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self._rate

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        return bucket

    def _forget_full(self, now: float) -> None:
        # A full bucket is the same as none: dropping them bounds memory when many
        # distinct keys (client addresses) pass by.
        refill_s = self._burst / self._rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < refill_s}


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
