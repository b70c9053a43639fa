"""The pure fold of job events into ``transcription_jobs`` rows (no I/O).

Events of one job reach the projector through several topics with no order between
them, and Kafka may deliver any event more than once, each copy after the original.
The fold is built so that the final row depends only on each topic's own order:

* Status (``JobStatusChanged``) is the only thing that moves ``status``.  A status event
  is applied when its ``(attempt, seq)`` is newer than the last applied one and the row
  is not terminal; otherwise it changes nothing but ``attempts`` and ``updated_at``.
  Whether a status event applies thus depends on the status stream alone.
* Requests fill the request fields whenever they arrive.  The request with the lowest
  ``(attempt, occurred_at)`` wins, so a retry request (attempt > 1) fills them only
  until the original is seen, and never touches status.
* ``CancelRequested`` only records ``cancel_requested_at`` (the earliest seen).  The
  worker that honours a cancel emits a ``cancelled`` status event, and that moves the
  status.  Moving ``pending`` to ``cancelled`` here would depend on whether the cancel
  or the worker's ``processing`` event is folded first, which topics do not order.
* ``DeadLetter`` fills ``error_type``/``error_message`` only while they are empty; an
  applied status event that carries an error always overwrites them, and no event
  clears them.  Either arrival order gives the same fields.  It never moves status.
* ``attempts`` is the highest attempt seen, ``updated_at`` the latest event time seen,
  and ``created_at`` the winning request's ``occurred_at`` or, before any request, the
  earliest event time seen: each is order-independent.
* A status event may come before anything else: the row is created from what is known
  (status ``pending`` until the status event is applied on top of it).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from db.errors import InvalidJobIdError
from db.rows import ErrorLogRow, JobRow, ResultRow
from schemas.events import (
    CancelRequested,
    DeadLetter,
    JobStatus,
    JobStatusChanged,
    TranscriptionRequested,
)

JobEvent = TranscriptionRequested | JobStatusChanged | CancelRequested | DeadLetter

TERMINAL_STATUSES = frozenset(s.value for s in JobStatus if s.is_terminal)

PROJECTOR_ERROR_PREFIX = "projector."
"""``error_type`` prefix of error rows the projector writes itself (not from the DLQ)."""


def parse_job_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError as exc:
        raise InvalidJobIdError(job_id) from exc


def job_id_of(event: JobEvent) -> uuid.UUID | None:
    """The job an event belongs to; None for a dead letter that names no job.

    Raises ``InvalidJobIdError`` when the id is not a UUID.
    """
    if event.job_id is None:
        return None
    return parse_job_id(event.job_id)


def new_row(job_id: uuid.UUID, at: datetime) -> JobRow:
    """The row of a job about which nothing but its id and one event time is known."""
    return JobRow(
        id=job_id,
        status=JobStatus.PENDING.value,
        progress=0.0,
        created_at=at,
        updated_at=at,
    )


def apply(row: JobRow | None, event: JobEvent) -> JobRow | None:
    """Fold one event into the row of its job (None: no row yet).

    Returns None only when there is no row and the event names no job.
    """
    job_id = job_id_of(event)
    if job_id is None:
        return row
    if row is None:
        row = new_row(job_id, event.occurred_at)
    elif row.id != job_id:
        raise ValueError(f"event of job {job_id} folded into the row of job {row.id}")
    row = _touch(row, event.occurred_at)
    if isinstance(event, TranscriptionRequested):
        return _apply_request(row, event)
    if isinstance(event, JobStatusChanged):
        return _apply_status(row, event)
    if isinstance(event, CancelRequested):
        return _apply_cancel(row, event)
    return _apply_dead_letter(row, event)


def is_terminal(row: JobRow) -> bool:
    return row.status in TERMINAL_STATUSES


def _touch(row: JobRow, at: datetime) -> JobRow:
    created_at = row.created_at if row.has_request else min(row.created_at, at)
    updated_at = max(row.updated_at, at)
    if created_at == row.created_at and updated_at == row.updated_at:
        return row
    return dataclasses.replace(row, created_at=created_at, updated_at=updated_at)


def _apply_request(row: JobRow, event: TranscriptionRequested) -> JobRow:
    attempts = max(row.attempts, event.attempt)
    if row.has_request and row.request_attempt is not None:
        held = (row.request_attempt, row.created_at)
        if held <= (event.attempt, event.occurred_at):
            return dataclasses.replace(row, attempts=attempts)
    audio = event.audio
    return dataclasses.replace(
        row,
        attempts=attempts,
        has_request=True,
        request_attempt=event.attempt,
        created_at=event.occurred_at,
        priority=event.priority.value,
        model_size=event.model,
        engine=event.engine,
        language=event.language,
        task=event.task.value,
        audio_uri=audio.uri,
        original_filename=audio.original_filename,
        content_type=audio.content_type,
        size_bytes=audio.size_bytes,
        sha256=audio.sha256,
        owner=event.owner,
        idempotency_key=event.idempotency_key,
        callback_url=event.callback_url,
        source=event.source.value,
        correlation_id=event.correlation_id,
        options=dataclasses.asdict(event.options),
    )


def _apply_status(row: JobRow, event: JobStatusChanged) -> JobRow:
    attempts = max(row.attempts, event.attempt)
    stale = (event.attempt, event.seq) <= (row.last_attempt, row.last_seq)
    if is_terminal(row) or stale:
        return row if attempts == row.attempts else dataclasses.replace(row, attempts=attempts)

    status = event.status
    changes: dict[str, Any] = {
        "attempts": attempts,
        "status": status.value,
        "progress": 1.0 if status is JobStatus.COMPLETED else event.progress,
        "last_attempt": event.attempt,
        "last_seq": event.seq,
    }
    if event.worker_id is not None:
        changes["worker_id"] = event.worker_id
    if event.model is not None:
        changes["model_used"] = event.model
    if status is JobStatus.PROCESSING and row.started_at is None:
        changes["started_at"] = event.occurred_at
    if status.is_terminal:
        changes["completed_at"] = event.occurred_at
    if event.error is not None:
        changes["error_type"] = event.error.type
        changes["error_message"] = event.error.message
    if status is JobStatus.COMPLETED and event.result is not None:
        changes["result"] = _result_row(row.id, event)
    return dataclasses.replace(row, **changes)


def _result_row(job_id: uuid.UUID, event: JobStatusChanged) -> ResultRow:
    summary = event.result
    if summary is None:
        raise ValueError("a result row needs a status event with a result summary")
    timing = event.timing
    return ResultRow(
        job_id=job_id,
        transcription_text=summary.text,
        language=summary.language,
        duration=summary.duration_s,
        word_count=summary.word_count,
        confidence=summary.confidence,
        segment_count=summary.segment_count,
        result_uri=summary.result_uri,
        engine=event.engine,
        model_used=event.model,
        processing_ms=timing.processing_ms if timing is not None else None,
        real_time_factor=timing.real_time_factor if timing is not None else None,
        created_at=event.occurred_at,
    )


def _apply_cancel(row: JobRow, event: CancelRequested) -> JobRow:
    held = row.cancel_requested_at
    if held is not None and held <= event.occurred_at:
        return row
    return dataclasses.replace(row, cancel_requested_at=event.occurred_at)


def _apply_dead_letter(row: JobRow, event: DeadLetter) -> JobRow:
    if row.error_type is not None:
        return row
    return dataclasses.replace(row, error_type=event.error_type, error_message=event.error_message)


def dead_letter_row(event: DeadLetter) -> ErrorLogRow:
    """The ``error_logs`` row that mirrors a dead letter.

    A job id that is not a UUID is kept in the message rather than failing the row.
    """
    message = event.error_message
    job_id: uuid.UUID | None = None
    if event.job_id is not None:
        try:
            job_id = parse_job_id(event.job_id)
        except InvalidJobIdError:
            message = f"{message} (job id {event.job_id!r} is not a UUID)"
    return ErrorLogRow(
        job_id=job_id,
        error_type=event.error_type,
        error_message=message,
        stack_trace=event.stack_trace,
        retry_count=event.retry_count,
        source_topic=event.source.topic,
        source_partition=event.source.partition,
        source_offset=event.source.offset,
        raw_payload=event.original_value,
        request=to_json(event.request) if event.request is not None else None,
        created_at=event.occurred_at,
    )


def projector_error_row(
    *,
    topic: str,
    partition: int,
    offset: int,
    at: datetime,
    key: bytes | None,
    raw: bytes | None,
    error_type: str,
    error_message: str,
) -> ErrorLogRow:
    """The ``error_logs`` row for a record the projector itself could not fold.

    ``at`` should be the Kafka record's timestamp, so a replay writes an equal row.
    The job id is taken from the record key when that is a UUID.
    """
    return ErrorLogRow(
        job_id=_job_id_from_key(key),
        error_type=PROJECTOR_ERROR_PREFIX + error_type,
        error_message=error_message,
        stack_trace=None,
        retry_count=0,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        raw_payload=raw,
        request=None,
        created_at=at,
    )


def _job_id_from_key(key: bytes | None) -> uuid.UUID | None:
    if key is None:
        return None
    try:
        return uuid.UUID(key.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def to_json(value: Any) -> Any:
    """A dataclass (or value) as JSON-ready data: enums by value, datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value
