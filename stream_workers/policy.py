"""Pure decisions of the job runner: time limits, retry delays, error classification."""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass

from schemas.errors import UndecodableEvent
from schemas.events import JobError
from storage.errors import InvalidS3UriError, ObjectNotFoundError
from storage.errors import StorageUnavailableError as S3Unavailable
from stream_workers.config import WorkerTuning
from stream_workers.errors import WorkerError, is_out_of_memory


@dataclass(frozen=True, slots=True)
class TimeLimits:
    soft_s: float
    hard_s: float


def time_limits(duration_s: float, tuning: WorkerTuning) -> TimeLimits:
    """Soft limit scaled by audio duration within [floor, ceiling]; hard keeps the margin."""
    soft = min(
        max(duration_s * tuning.job_time_limit_factor, tuning.job_time_limit_floor_s),
        tuning.job_soft_time_limit_s,
    )
    margin = tuning.job_hard_time_limit_s - tuning.job_soft_time_limit_s
    return TimeLimits(soft, min(soft + margin, tuning.job_hard_time_limit_s))


def retry_delay_s(attempt: int, tuning: WorkerTuning, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: base x 2**(attempt-1), with +/- jitter."""
    delay = tuning.retry_base_s * float(2 ** (attempt - 1))
    return max(0.0, delay * (1 + rng.uniform(-tuning.retry_jitter, tuning.retry_jitter)))


def classify(exc: BaseException) -> JobError:
    """Transient failures are worth a retry; everything else goes straight to the DLQ."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, WorkerError):
        retryable = exc.retryable
    elif isinstance(exc, S3Unavailable) or is_out_of_memory(exc):
        retryable = True
    elif isinstance(exc, ObjectNotFoundError | InvalidS3UriError | UndecodableEvent):
        retryable = False
    elif type(exc).__module__.startswith(("confluent_kafka", "aiokafka")):
        retryable = True
    else:
        # An error we did not foresee is a bug until shown otherwise: a person should look.
        retryable = False
    return JobError(type=type(exc).__name__, message=message[:2000], retryable=retryable)


def stack_trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-8000:]
