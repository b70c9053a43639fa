"""Builders of job events with sensible defaults, for tests and benchmarks of the fold.

Event ids are derived from the job id and the event's position, so building the same
event twice gives equal objects (a duplicate, as Kafka would redeliver it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.events import (
    AudioRef,
    CancelRequested,
    DeadLetter,
    JobError,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    Priority,
    ResultSummary,
    Source,
    SourcePosition,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
)

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A fixed instant ``seconds`` after 2025-01-01 UTC, at millisecond precision."""
    return EPOCH + timedelta(milliseconds=round(seconds * 1000))


def _event_id(job_id: uuid.UUID, name: str) -> str:
    return str(uuid.uuid5(job_id, name))


def request(
    job_id: uuid.UUID,
    *,
    occurred_at: datetime,
    attempt: int = 1,
    owner: str | None = "alice",
    priority: Priority = Priority.NORMAL,
    model: str = "tiny.en",
    engine: str | None = None,
    idempotency_key: str | None = None,
    source: Source = Source.API,
) -> TranscriptionRequested:
    return TranscriptionRequested(
        event_id=_event_id(job_id, f"request-{attempt}-{occurred_at.isoformat()}"),
        job_id=str(job_id),
        occurred_at=occurred_at,
        priority=priority,
        attempt=attempt,
        not_before=None,
        audio=AudioRef(
            uri=f"s3://audio/uploads/{job_id}/speech.flac",
            size_bytes=176_000,
            sha256="0" * 64,
            content_type="audio/flac",
            original_filename="speech.flac",
        ),
        model=model,
        engine=engine,
        language=None,
        task=Task.TRANSCRIBE,
        options=TranscriptionOptions(),
        owner=owner,
        idempotency_key=idempotency_key,
        callback_url=None,
        source=source,
        correlation_id=None,
    )


def status(
    job_id: uuid.UUID,
    *,
    occurred_at: datetime,
    attempt: int = 1,
    seq: int = 0,
    status: JobStatus = JobStatus.PROCESSING,
    progress: float = 0.0,
    worker_id: str | None = "worker-1",
    error: JobError | None = None,
) -> JobStatusChanged:
    """A status event; a ``completed`` one gets a result summary and timings."""
    completed = status is JobStatus.COMPLETED
    return JobStatusChanged(
        event_id=_event_id(job_id, f"status-{attempt}-{seq}"),
        job_id=str(job_id),
        occurred_at=occurred_at,
        attempt=attempt,
        seq=seq,
        status=status,
        progress=1.0 if completed else progress,
        worker_id=worker_id,
        engine="faster-whisper",
        model="tiny.en",
        error=error,
        result=_summary(job_id) if completed else None,
        timing=JobTiming(queued_ms=5, processing_ms=800, real_time_factor=0.07)
        if completed
        else None,
    )


def _summary(job_id: uuid.UUID) -> ResultSummary:
    return ResultSummary(
        text="And so, my fellow Americans, ask not what your country can do for you.",
        language="en",
        duration_s=11.0,
        word_count=14,
        confidence=0.93,
        segment_count=1,
        result_uri=f"s3://results/{job_id}.json",
    )


def job_error(message: str = "decoder crashed", *, retryable: bool = True) -> JobError:
    return JobError(type="EngineError", message=message, retryable=retryable)


def cancel(job_id: uuid.UUID, *, occurred_at: datetime) -> CancelRequested:
    return CancelRequested(
        event_id=_event_id(job_id, f"cancel-{occurred_at.isoformat()}"),
        job_id=str(job_id),
        occurred_at=occurred_at,
        requested_by="alice",
        reason=None,
    )


def dead_letter(
    job_id: uuid.UUID | None,
    *,
    occurred_at: datetime,
    source: SourcePosition,
    error_type: str = "EngineError",
    error_message: str = "gave up after 3 attempts",
    with_request: bool = False,
) -> DeadLetter:
    named = job_id if job_id is not None else uuid.UUID(int=0)
    return DeadLetter(
        event_id=_event_id(named, f"dlq-{source.topic}-{source.partition}-{source.offset}"),
        job_id=str(job_id) if job_id is not None else None,
        occurred_at=occurred_at,
        error_type=error_type,
        error_message=error_message,
        stack_trace="Traceback (most recent call last): ...",
        retry_count=2,
        source=source,
        original_value=b"\xc3\x01payload",
        request=request(job_id, occurred_at=occurred_at)
        if with_request and job_id is not None
        else None,
    )
