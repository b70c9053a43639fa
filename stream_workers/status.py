"""Status events of one delivery of one job, numbered so that the fold orders them."""

from __future__ import annotations

import asyncio
import time
import uuid

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

_COMPLETED_EVENTS = uuid.UUID("5a1f0c2e-3b7d-4e8a-9c61-2d4f8b0e7a13")


def completed_event_id(job_id: str) -> str:
    """The id of every `completed` event of a job.

    A job completes once, but a worker killed after sending `completed` and before
    committing its offset gets the request again, finds the stored result and sends
    `completed` again. With the same id, consumers that deduplicate on it (the notifier's
    `webhook-id`) see one event, not a second completion.
    """
    return str(uuid.uuid5(_COMPLETED_EVENTS, job_id))


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
        self._pending: list[asyncio.Future[None]] = []
        self._progress = 0.0
        self.engine: str | None = None
        self.model: str | None = None

    def emit_nowait(self, status: JobStatus, *, progress: float | None = None) -> None:
        """Send a non-terminal event without waiting for the broker's acknowledgement.

        Processing and progress events are informative; the job does not wait for them.
        The next `emit` (every terminal event is one) waits for them first, so a job's
        events are still delivered in order and a failure to deliver any of them fails
        that terminal step, as if it had been awaited at once.
        """
        event = self._event(status, progress=progress)
        self._pending.append(asyncio.ensure_future(self._send(event)))

    async def emit(
        self,
        status: JobStatus,
        *,
        progress: float | None = None,
        error: JobError | None = None,
        result: ResultSummary | None = None,
        timing: JobTiming | None = None,
    ) -> None:
        """Send an event and return once the broker has it, and every event before it."""
        event = self._event(status, progress=progress, error=error, result=result, timing=timing)
        await self.settle()
        await self._send(event)

    async def settle(self) -> None:
        """Wait for the events sent without waiting (raises if one was not delivered)."""
        pending, self._pending = self._pending, []
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send(self, event: JobStatusChanged) -> None:
        await self._publisher.publish(self._topic, self._request.job_id, event)

    def _event(
        self,
        status: JobStatus,
        *,
        progress: float | None = None,
        error: JobError | None = None,
        result: ResultSummary | None = None,
        timing: JobTiming | None = None,
    ) -> JobStatusChanged:
        """`progress=None` repeats the last progress sent: a cancelled or failed job
        keeps showing how far it got."""
        self._seq += 1
        if progress is not None:
            self._progress = min(1.0, max(0.0, progress))
        completed = status is JobStatus.COMPLETED
        return JobStatusChanged(
            event_id=completed_event_id(self._request.job_id) if completed else new_event_id(),
            job_id=self._request.job_id,
            occurred_at=utc_now(),
            attempt=self._request.attempt,
            seq=self._seq,
            status=status,
            progress=self._progress,
            worker_id=self._worker_id,
            engine=self.engine,
            model=self.model,
            error=error,
            result=result,
            timing=timing,
        )
