"""Events of the notifier tests: an upstream request (straight to Kafka) and its end."""

from __future__ import annotations

from schemas.events import (
    AudioRef,
    JobError,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    Priority,
    ResultSummary,
    Source,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)


def upstream_request(
    job_id: str, callback_url: str | None, owner: str | None
) -> TranscriptionRequested:
    return TranscriptionRequested(
        event_id=new_event_id(),
        job_id=job_id,
        occurred_at=utc_now(),
        priority=Priority.NORMAL,
        attempt=1,
        not_before=None,
        audio=AudioRef(
            f"s3://audio/uploads/{job_id}/a.flac", 1000, "ab" * 32, "audio/flac", "a.flac"
        ),
        model="tiny.en",
        engine=None,
        language=None,
        task=Task.TRANSCRIBE,
        options=TranscriptionOptions(),
        owner=owner,
        idempotency_key=None,
        callback_url=callback_url,
        source=Source.KAFKA,
        correlation_id=None,
    )


def ended(job_id: str, status: JobStatus = JobStatus.COMPLETED) -> JobStatusChanged:
    completed = status is JobStatus.COMPLETED
    return JobStatusChanged(
        event_id=new_event_id(),
        job_id=job_id,
        occurred_at=utc_now(),
        attempt=1,
        seq=3,
        status=status,
        progress=1.0 if completed else 0.5,
        worker_id="worker-t",
        engine="faster-whisper",
        model="tiny.en",
        error=None if completed else JobError("AudioDecodeError", "not audio", False),
        result=(
            ResultSummary(
                "And so, my fellow Americans", "en", 11.0, 5, 0.9, 1, f"s3://results/{job_id}.json"
            )
            if completed
            else None
        ),
        timing=JobTiming(10, 700, 15.0) if completed else None,
    )
