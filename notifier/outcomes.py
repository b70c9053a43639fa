"""What an attempt's answer means, and when the next attempt is due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    """Failed in a way worth retrying (timeout, connection, 408, 429, 5xx): a next
    attempt is scheduled."""
    FAILED = "failed"
    """Given up: another 4xx, a redirect (never followed), a refused address, no
    signing secret, or retries exhausted."""
    GONE = "gone"
    """410 Gone: the receiver asked for no more callbacks of this job."""
    SKIPPED = "skipped"
    """Not sent: the event was already delivered to this URL, or the job's receiver
    answered 410 to another attempt."""


RETRYABLE_CODES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt gave: a status code, or an error and whether it is
    transient (timeouts and connection failures) or final (a refused address)."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    transient: bool = True


def classify(result: AttemptResult) -> Outcome:
    code = result.status_code
    if code is None:
        return Outcome.RETRYING if result.transient else Outcome.FAILED
    if 200 <= code < 300:
        return Outcome.SUCCEEDED
    if code == 410:
        return Outcome.GONE
    if code in RETRYABLE_CODES or code >= 500:
        return Outcome.RETRYING
    return Outcome.FAILED


def retry_delay(attempt: int, schedule: Sequence[float]) -> float | None:
    """The wait before attempt ``attempt + 1``, or None when ``attempt`` was the last."""
    return schedule[attempt - 1] if attempt <= len(schedule) else None


def describe(result: AttemptResult) -> str | None:
    """The error column of an attempt: the error, or the status when it was not 2xx."""
    if result.error is not None:
        return result.error
    code = result.status_code
    if code is not None and not 200 <= code < 300:
        if 300 <= code < 400:
            return f"HTTP {code}: redirects are not followed"
        return f"HTTP {code}"
    return None
