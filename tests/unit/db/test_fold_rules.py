"""Plain examples of each rule of the fold (db/fold.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

import pytest

from db import fold, models
from db.errors import InvalidJobIdError
from db.fold import JobEvent
from db.rows import ErrorLogRow, JobRow, ResultRow
from schemas.events import JobStatus, Priority, SourcePosition
from tests.support.fold_events import at, cancel, dead_letter, job_error, request, status

JOB = uuid.UUID("6f1c1b9e-0000-4000-8000-000000000001")
DLQ_SOURCE = SourcePosition(topic="transcription.requests.retry", partition=0, offset=7)


def fold_all(events: Iterable[JobEvent], row: JobRow | None = None) -> JobRow:
    for event in events:
        row = fold.apply(row, event)
    assert row is not None
    return row


def test_request_creates_a_pending_row_with_the_request_fields() -> None:
    row = fold_all([request(JOB, occurred_at=at(1), priority=Priority.HIGH)])

    assert row.status == "pending"
    assert row.has_request
    assert row.request_attempt == 1
    assert row.priority == "high"
    assert row.owner == "alice"
    assert row.model_size == "tiny.en"
    assert row.created_at == at(1)
    assert row.options["temperature"] == 0.0
    assert row.attempts == 1


def test_status_before_request_creates_the_row_and_request_fills_it_later() -> None:
    early = fold_all([status(JOB, occurred_at=at(5), status=JobStatus.PROCESSING)])
    assert early.status == "processing"
    assert not early.has_request
    assert early.owner is None
    assert early.created_at == at(5)

    row = fold_all([request(JOB, occurred_at=at(1))], early)
    assert row.status == "processing"
    assert row.owner == "alice"
    assert row.created_at == at(1)
    assert row.updated_at == at(5)


def test_created_at_is_the_earliest_event_time_until_a_request_is_seen() -> None:
    row = fold_all(
        [
            status(JOB, occurred_at=at(9), seq=1),
            cancel(JOB, occurred_at=at(4)),
        ]
    )
    assert row.created_at == at(4)
    row = fold_all([request(JOB, occurred_at=at(6))], row)
    assert row.created_at == at(6)


def test_terminal_status_is_final() -> None:
    row = fold_all(
        [
            request(JOB, occurred_at=at(0)),
            status(JOB, occurred_at=at(1), seq=0),
            status(JOB, occurred_at=at(2), seq=1, status=JobStatus.COMPLETED),
            status(JOB, occurred_at=at(3), seq=2, status=JobStatus.PROCESSING),
            status(JOB, occurred_at=at(4), attempt=2, seq=0, status=JobStatus.FAILED),
        ]
    )
    assert row.status == "completed"
    assert row.completed_at == at(2)
    assert row.progress == 1.0
    assert row.attempts == 2


def test_an_older_status_event_does_not_change_status_or_progress() -> None:
    newer = status(JOB, occurred_at=at(3), attempt=2, seq=0, progress=0.1)
    older = status(JOB, occurred_at=at(2), attempt=1, seq=5, progress=0.9)
    row = fold_all([newer, older])
    assert (row.status, row.progress) == ("processing", 0.1)
    assert (row.last_attempt, row.last_seq) == (2, 0)


def test_retry_request_does_not_reset_status_or_replace_the_original_request() -> None:
    row = fold_all(
        [
            request(JOB, occurred_at=at(0), priority=Priority.HIGH),
            status(JOB, occurred_at=at(1), seq=0),
            status(JOB, occurred_at=at(2), seq=1, status=JobStatus.RETRYING, error=job_error()),
            request(JOB, occurred_at=at(3), attempt=2, priority=Priority.NORMAL),
        ]
    )
    assert row.status == "retrying"
    assert row.priority == "high"
    assert row.created_at == at(0)
    assert row.attempts == 2


def test_original_request_replaces_the_fields_of_a_retry_request_seen_first() -> None:
    retry_first = fold_all(
        [
            request(JOB, occurred_at=at(3), attempt=2, priority=Priority.NORMAL),
            request(JOB, occurred_at=at(0), priority=Priority.HIGH),
        ]
    )
    original_first = fold_all(
        [
            request(JOB, occurred_at=at(0), priority=Priority.HIGH),
            request(JOB, occurred_at=at(3), attempt=2, priority=Priority.NORMAL),
        ]
    )
    assert retry_first == original_first
    assert retry_first.priority == "high"
    assert retry_first.request_attempt == 1


def test_duplicates_change_nothing() -> None:
    events: list[JobEvent] = [
        request(JOB, occurred_at=at(0)),
        status(JOB, occurred_at=at(1), seq=0),
        cancel(JOB, occurred_at=at(2)),
        status(JOB, occurred_at=at(3), seq=1, status=JobStatus.CANCELLED),
        dead_letter(JOB, occurred_at=at(4), source=DLQ_SOURCE),
    ]
    once = fold_all(events)
    for event in events:
        assert fold.apply(once, event) == once


def test_cancel_records_the_earliest_request_and_leaves_status_to_the_worker() -> None:
    row = fold_all(
        [
            request(JOB, occurred_at=at(0)),
            cancel(JOB, occurred_at=at(5)),
            cancel(JOB, occurred_at=at(2)),
        ]
    )
    assert row.status == "pending"
    assert row.cancel_requested_at == at(2)

    row = fold_all([status(JOB, occurred_at=at(6), status=JobStatus.CANCELLED)], row)
    assert row.status == "cancelled"
    assert row.completed_at == at(6)


def test_processing_sets_started_at_once_and_completed_brings_the_result() -> None:
    row = fold_all(
        [
            status(JOB, occurred_at=at(1), seq=0, worker_id="w-a"),
            status(JOB, occurred_at=at(2), seq=1, status=JobStatus.RETRYING, error=job_error()),
            status(JOB, occurred_at=at(3), attempt=2, seq=0, worker_id="w-b"),
            status(
                JOB,
                occurred_at=at(4),
                attempt=2,
                seq=1,
                status=JobStatus.COMPLETED,
                worker_id="w-b",
            ),
        ]
    )
    assert row.started_at == at(1)
    assert row.worker_id == "w-b"
    assert row.model_used == "tiny.en"
    assert row.error_type == "EngineError"
    assert isinstance(row.result, ResultRow)
    assert row.result.job_id == JOB
    assert row.result.word_count == 14
    assert row.result.processing_ms == 800
    assert row.result.created_at == at(4)


def test_dead_letter_fills_error_fields_without_moving_status() -> None:
    completed = fold_all(
        [
            request(JOB, occurred_at=at(0)),
            status(JOB, occurred_at=at(1), status=JobStatus.COMPLETED),
        ]
    )
    row = fold_all([dead_letter(JOB, occurred_at=at(2), source=DLQ_SOURCE)], completed)
    assert row.status == "completed"
    assert row.error_type == "EngineError"
    assert row.error_message == "gave up after 3 attempts"


def test_status_error_wins_over_dead_letter_error_in_either_order() -> None:
    failed = status(
        JOB,
        occurred_at=at(2),
        status=JobStatus.FAILED,
        error=job_error("out of memory", retryable=False),
    )
    dlq = dead_letter(JOB, occurred_at=at(3), source=DLQ_SOURCE, error_type="PoolError")
    assert fold_all([failed, dlq]) == fold_all([dlq, failed])
    assert fold_all([failed, dlq]).error_message == "out of memory"


def test_dead_letter_without_job_leaves_no_row() -> None:
    assert fold.apply(None, dead_letter(None, occurred_at=at(1), source=DLQ_SOURCE)) is None


def test_event_of_a_non_uuid_job_is_rejected() -> None:
    event = dataclasses.replace(request(JOB, occurred_at=at(0)), job_id="job-17")
    with pytest.raises(InvalidJobIdError):
        fold.apply(None, event)


def test_event_of_another_job_is_rejected() -> None:
    row = fold_all([request(JOB, occurred_at=at(0))])
    with pytest.raises(ValueError, match="folded into the row"):
        fold.apply(row, request(uuid.uuid4(), occurred_at=at(0)))


def test_dead_letter_row_mirrors_the_dead_letter() -> None:
    event = dead_letter(JOB, occurred_at=at(8), source=DLQ_SOURCE, with_request=True)
    row = fold.dead_letter_row(event)
    assert row.job_id == JOB
    assert (row.source_topic, row.source_partition, row.source_offset) == (
        "transcription.requests.retry",
        0,
        7,
    )
    assert row.raw_payload == event.original_value
    assert row.request is not None
    assert row.request["priority"] == "normal"
    assert row.request["occurred_at"] == at(8).isoformat()
    assert row.created_at == at(8)


def test_dead_letter_row_keeps_a_non_uuid_job_id_in_its_message() -> None:
    event = dataclasses.replace(
        dead_letter(JOB, occurred_at=at(8), source=DLQ_SOURCE), job_id="job-17"
    )
    row = fold.dead_letter_row(event)
    assert row.job_id is None
    assert "job-17" in row.error_message


def test_projector_error_row_takes_the_job_from_the_key() -> None:
    row = fold.projector_error_row(
        topic="transcription.status",
        partition=2,
        offset=41,
        at=at(3),
        key=str(JOB).encode(),
        raw=b"\x00garbage",
        error_type="DecodeError",
        error_message="unknown framing",
    )
    assert row.job_id == JOB
    assert row.error_type == "projector.DecodeError"
    no_key = dataclasses.replace(row, job_id=None)
    assert (
        fold.projector_error_row(
            topic="transcription.status",
            partition=2,
            offset=41,
            at=at(3),
            key=b"\xff\xfe",
            raw=b"\x00garbage",
            error_type="DecodeError",
            error_message="unknown framing",
        )
        == no_key
    )


@pytest.mark.parametrize(
    ("row_type", "model"),
    [
        (JobRow, models.TranscriptionJob),
        (ResultRow, models.TranscriptionResult),
        (ErrorLogRow, models.ErrorLog),
    ],
)
def test_rows_mirror_their_tables(row_type: type, model: type[models.Base]) -> None:
    fields = {f.name for f in dataclasses.fields(row_type)} - {"result"}
    columns = set(model.__table__.columns.keys())
    if model is models.ErrorLog:
        columns -= {"id", "resolved", "resolved_at"}
    assert fields == columns
