"""Status events of one delivery of one job, numbered so that the fold orders them."""

from __future__ import annotations

import time

from schemas.events import (
    JobError,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    ResultSummary,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from stream_workers.ports import EventPublisher


class StatusEmitter:
    """`seq` starts at the delivery's start time in µs-scaled milliseconds.

    The fold drops a status event whose (attempt, seq) is not newer than the last one
    applied. A redelivered attempt (after a crash) must therefore continue above the
    seq the crashed run reached, which a counter restarting at 1 would not do.
    """

    def __init__(
        self, publisher: EventPublisher, topic: str, request: TranscriptionRequested, worker_id: str
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._request = request
        self._worker_id = worker_id
        self._seq = time.time_ns() // 1_000_000 * 1000
        self.engine: str | None = None
        self.model: str | None = None

    async def emit(
        self,
        status: JobStatus,
        *,
        progress: float = 0.0,
        error: JobError | None = None,
        result: ResultSummary | None = None,
        timing: JobTiming | None = None,
    ) -> None:
        self._seq += 1
        event = JobStatusChanged(
            event_id=new_event_id(),
            job_id=self._request.job_id,
            occurred_at=utc_now(),
            attempt=self._request.attempt,
            seq=self._seq,
            status=status,
            progress=min(1.0, max(0.0, progress)),
            worker_id=self._worker_id,
            engine=self.engine,
            model=self.model,
            error=error,
            result=result,
            timing=timing,
        )
        await self._publisher.publish(self._topic, self._request.job_id, event)
