"""Event dataclasses: the in-code form of every Avro record on the whisperstream topics.

Field names and order match the current ``.avsc`` of each event exactly (a unit test
checks this), so the codec can map between dicts and dataclasses without a table.
Datetimes are timezone-aware and have millisecond precision, because Avro's
``timestamp-millis`` keeps no more; build them with :func:`utc_now` or
:func:`to_millis` so a round trip gives back an equal object.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"


class Task(StrEnum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


class Source(StrEnum):
    API = "api"
    KAFKA = "kafka"
    BACKFILL = "backfill"
    REDRIVE = "redrive"


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
"""Statuses a job never leaves. StrEnum members: ``"failed" in TERMINAL_STATUSES`` holds."""


def new_event_id() -> str:
    return str(uuid.uuid4())


def to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to whole milliseconds (what Avro keeps)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: event times must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def utc_now() -> datetime:
    return to_millis(datetime.now(UTC))


def _require_aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got a naive datetime")


@dataclass(frozen=True, slots=True)
class AudioRef:
    uri: str
    size_bytes: int
    sha256: str
    content_type: str
    original_filename: str


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    initial_prompt: str | None = None
    word_timestamps: bool = False
    temperature: float = 0.0
    beam_size: int | None = None
    vad_filter: bool = False


@dataclass(frozen=True, slots=True)
class TranscriptionRequested:
    event_id: str
    job_id: str
    occurred_at: datetime
    priority: Priority
    attempt: int
    not_before: datetime | None
    audio: AudioRef
    model: str
    engine: str | None
    language: str | None
    task: Task
    options: TranscriptionOptions
    owner: str | None
    idempotency_key: str | None
    callback_url: str | None
    source: Source
    correlation_id: str | None

    def __post_init__(self) -> None:
        _require_aware("occurred_at", self.occurred_at)
        _require_aware("not_before", self.not_before)
        if self.attempt < 1:
            raise ValueError(f"attempt is 1-based, got {self.attempt}")


@dataclass(frozen=True, slots=True)
class JobError:
    type: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class ResultSummary:
    text: str
    language: str
    duration_s: float
    word_count: int
    confidence: float | None
    segment_count: int
    result_uri: str


@dataclass(frozen=True, slots=True)
class JobTiming:
    queued_ms: int
    processing_ms: int
    real_time_factor: float


@dataclass(frozen=True, slots=True)
class JobStatusChanged:
    event_id: str
    job_id: str
    occurred_at: datetime
    attempt: int
    seq: int
    status: JobStatus
    progress: float
    worker_id: str | None
    engine: str | None
    model: str | None
    error: JobError | None
    result: ResultSummary | None
    timing: JobTiming | None

    def __post_init__(self) -> None:
        _require_aware("occurred_at", self.occurred_at)
        if self.attempt < 1:
            raise ValueError(f"attempt is 1-based, got {self.attempt}")
        if not 0.0 <= self.progress <= 1.0:
            raise ValueError(f"progress must be within 0..1, got {self.progress}")


@dataclass(frozen=True, slots=True)
class CancelRequested:
    event_id: str
    job_id: str
    occurred_at: datetime
    requested_by: str | None
    reason: str | None

    def __post_init__(self) -> None:
        _require_aware("occurred_at", self.occurred_at)


@dataclass(frozen=True, slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event_id: str
    job_id: str | None
    occurred_at: datetime
    error_type: str
    error_message: str
    stack_trace: str | None
    retry_count: int
    source: SourcePosition
    original_value: bytes
    request: TranscriptionRequested | None

    def __post_init__(self) -> None:
        _require_aware("occurred_at", self.occurred_at)


@dataclass(frozen=True, slots=True)
class PoolStats:
    hits: int
    misses: int
    evictions: int
    oom_fallbacks: int
    loads: int
    load_seconds: float


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    worker_id: str
    host: str
    pid: int
    occurred_at: datetime
    engines: list[str]
    loaded_models: list[str]
    pool: PoolStats
    in_flight: int
    concurrency: int
    processed: int
    failed: int

    def __post_init__(self) -> None:
        _require_aware("occurred_at", self.occurred_at)


Event = TranscriptionRequested | JobStatusChanged | CancelRequested | DeadLetter | WorkerHeartbeat

EVENT_TYPES: tuple[type[Event], ...] = (
    TranscriptionRequested,
    JobStatusChanged,
    CancelRequested,
    DeadLetter,
    WorkerHeartbeat,
)
"""Every top-level event type; its class name is its Avro record name."""
