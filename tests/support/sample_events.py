"""Sample events of every type, with every optional field set and unset."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import (
    AudioRef,
    CancelRequested,
    DeadLetter,
    Event,
    JobError,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    PoolStats,
    Priority,
    ResultSummary,
    Source,
    SourcePosition,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    WorkerHeartbeat,
)

WHEN = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
LATER = datetime(2026, 3, 14, 15, 10, 0, 1000, tzinfo=UTC)
JOB = "6f1c1e7a-3b8e-4c55-9a57-0d6f9e3c2b10"


def full_request() -> TranscriptionRequested:
    return TranscriptionRequested(
        event_id="0b5f4c52-8a39-4d84-b1b3-7e3f6b9c2a11",
        job_id=JOB,
        occurred_at=WHEN,
        priority=Priority.HIGH,
        attempt=2,
        not_before=LATER,
        audio=AudioRef(
            uri=f"s3://audio/uploads/{JOB}/jfk.flac",
            size_bytes=360_000,
            sha256="9f" * 32,
            content_type="audio/flac",
            original_filename="jfk.flac",
        ),
        model="tiny.en",
        engine="faster-whisper",
        language="en",
        task=Task.TRANSLATE,
        options=TranscriptionOptions(
            initial_prompt="Kennedy, inaugural address",
            word_timestamps=True,
            temperature=0.2,
            beam_size=5,
            vad_filter=True,
        ),
        owner="alice",
        idempotency_key="upload-42",
        callback_url="https://example.test/hook",
        source=Source.API,
        correlation_id="req-7",
    )


def minimal_request() -> TranscriptionRequested:
    return TranscriptionRequested(
        event_id="1c9d7f2e-0000-4000-8000-000000000001",
        job_id=JOB,
        occurred_at=WHEN,
        priority=Priority.NORMAL,
        attempt=1,
        not_before=None,
        audio=AudioRef(f"s3://audio/uploads/{JOB}/a.wav", 0, "00" * 32, "audio/wav", "a.wav"),
        model="base",
        engine=None,
        language=None,
        task=Task.TRANSCRIBE,
        options=TranscriptionOptions(),
        owner=None,
        idempotency_key=None,
        callback_url=None,
        source=Source.KAFKA,
        correlation_id=None,
    )


def sample_events() -> list[Event]:
    """Every event type twice: every optional field set, and every optional field None."""
    return [
        full_request(),
        minimal_request(),
        JobStatusChanged(
            event_id="2a7e0c4d-1111-4a1a-9a9a-000000000002",
            job_id=JOB,
            occurred_at=WHEN,
            attempt=1,
            seq=7,
            status=JobStatus.COMPLETED,
            progress=1.0,
            worker_id="worker-a",
            engine="faster-whisper",
            model="tiny.en",
            error=JobError("CudaOOM", "out of memory; fell back", retryable=True),
            result=ResultSummary(
                text="And so, my fellow Americans…",
                language="en",
                duration_s=11.0,
                word_count=22,
                confidence=0.93,
                segment_count=1,
                result_uri=f"s3://results/{JOB}.json",
            ),
            timing=JobTiming(queued_ms=120, processing_ms=780, real_time_factor=14.1),
        ),
        JobStatusChanged(
            event_id="2a7e0c4d-1111-4a1a-9a9a-000000000003",
            job_id=JOB,
            occurred_at=WHEN,
            attempt=1,
            seq=0,
            status=JobStatus.PENDING,
            progress=0.0,
            worker_id=None,
            engine=None,
            model=None,
            error=None,
            result=None,
            timing=None,
        ),
        JobStatusChanged(
            event_id="2a7e0c4d-1111-4a1a-9a9a-000000000004",
            job_id=JOB,
            occurred_at=WHEN,
            attempt=3,
            seq=2,
            status=JobStatus.FAILED,
            progress=0.25,
            worker_id="worker-b",
            engine="openai-whisper",
            model="base",
            error=JobError("AudioDecodeError", "not audio", retryable=False),
            result=ResultSummary("", "en", 0.0, 0, None, 0, f"s3://results/{JOB}.json"),
            timing=None,
        ),
        CancelRequested("3b8f1d5e-2222-4b2b-8b8b-000000000005", JOB, WHEN, "alice", "wrong file"),
        CancelRequested("3b8f1d5e-2222-4b2b-8b8b-000000000006", JOB, WHEN, None, None),
        DeadLetter(
            event_id="4c9a2e6f-3333-4c3c-9c9c-000000000007",
            job_id=JOB,
            occurred_at=WHEN,
            error_type="AudioDecodeError",
            error_message="ffmpeg: invalid data",
            stack_trace="Traceback (most recent call last):\n  ...",
            retry_count=3,
            source=SourcePosition("transcription.requests.normal", 4, 123_456_789_012),
            original_value=b"\xc3\x01\x00\xff binary \x00",
            request=full_request(),
        ),
        DeadLetter(
            event_id="4c9a2e6f-3333-4c3c-9c9c-000000000008",
            job_id=None,
            occurred_at=WHEN,
            error_type="UndecodableEvent",
            error_message="not single-object Avro",
            stack_trace=None,
            retry_count=0,
            source=SourcePosition("transcription.requests.high", 0, 0),
            original_value=b"",
            request=None,
        ),
        WorkerHeartbeat(
            worker_id="worker-a",
            host="gpu-1",
            pid=4242,
            occurred_at=WHEN,
            engines=["faster-whisper", "openai-whisper"],
            loaded_models=["faster-whisper/tiny.en"],
            pool=PoolStats(
                hits=10, misses=2, evictions=1, oom_fallbacks=0, loads=2, load_seconds=3.5
            ),
            in_flight=1,
            concurrency=2,
            processed=40,
            failed=1,
        ),
        WorkerHeartbeat(
            worker_id="worker-b",
            host="cpu-1",
            pid=1,
            occurred_at=WHEN,
            engines=[],
            loaded_models=[],
            pool=PoolStats(0, 0, 0, 0, 0, 0.0),
            in_flight=0,
            concurrency=1,
            processed=0,
            failed=0,
        ),
    ]
