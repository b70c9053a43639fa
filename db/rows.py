"""Plain, immutable rows: what the fold computes and what the read side returns.

They mirror the tables in ``db/models.py`` field for field (a unit test checks this), so
the store maps them to and from SQL without a hand-written table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ResultRow:
    job_id: uuid.UUID
    transcription_text: str | None
    language: str | None
    duration: float | None
    word_count: int | None
    confidence: float | None
    segment_count: int | None
    result_uri: str | None
    engine: str | None
    model_used: str | None
    processing_ms: int | None
    real_time_factor: float | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobRow:
    id: uuid.UUID
    status: str
    progress: float
    created_at: datetime
    updated_at: datetime
    # request fields, None until a TranscriptionRequested has been folded in
    priority: str | None = None
    model_size: str | None = None
    engine: str | None = None
    language: str | None = None
    task: str | None = None
    audio_uri: str | None = None
    original_filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # execution fields
    model_used: str | None = None
    worker_id: str | None = None
    attempts: int = 0
    error_message: str | None = None
    error_type: str | None = None
    cancel_requested_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # fold bookkeeping
    last_attempt: int = 0
    last_seq: int = -1
    has_request: bool = False
    request_attempt: int | None = None
    result: ResultRow | None = None


@dataclass(frozen=True, slots=True)
class ErrorLogRow:
    """An ``error_logs`` row before it has its database id and resolution state."""

    job_id: uuid.UUID | None
    error_type: str
    error_message: str
    stack_trace: str | None
    retry_count: int
    source_topic: str
    source_partition: int
    source_offset: int
    raw_payload: bytes | None
    request: dict[str, Any] | None
    created_at: datetime
