"""Batch apply against a real Postgres: idempotent, order-independent, DLQ mirrored once."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db import fold
from db.engine import create_engine
from db.error_queries import list_errors
from db.fold import JobEvent
from db.job_queries import get_job
from db.models import error_logs_table, jobs_table, projector_offsets_table
from db.projection_store import apply_batch
from db.records import ProjectionRecord, Undecodable
from db.rows import JobRow
from schemas.events import Event, JobStatus, SourcePosition
from tests.support.fold_events import at, cancel, dead_letter, job_error, request, status

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@dataclass
class Topics:
    """Topic names and a consumer group of this test alone, handing out offsets."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"projector-{self.suffix}"

    def name(self, topic: str) -> str:
        return f"{topic}.{self.suffix}"

    def record(
        self, topic: str, event: Event | Undecodable, *, key: uuid.UUID | None = None
    ) -> ProjectionRecord:
        position = (self.name(topic), 0)
        offset = self.offsets.get(position, 0)
        self.offsets[position] = offset + 1
        timestamp = event.occurred_at if not isinstance(event, Undecodable) else at(100)
        return ProjectionRecord(
            topic=position[0],
            partition=0,
            offset=offset,
            timestamp=timestamp,
            key=str(key).encode() if key is not None else None,
            payload=event,
        )


def fold_in_order(events: Sequence[JobEvent]) -> JobRow | None:
    row: JobRow | None = None
    for event in events:
        row = fold.apply(row, event)
    return row


def job_history(job: uuid.UUID) -> dict[str, list[JobEvent]]:
    return {
        "requests": [request(job, occurred_at=at(0))],
        "status": [
            status(job, occurred_at=at(1), seq=0),
            status(job, occurred_at=at(2), seq=1, status=JobStatus.RETRYING, error=job_error()),
            status(job, occurred_at=at(4), attempt=2, seq=0, progress=0.5),
            status(job, occurred_at=at(5), attempt=2, seq=1, status=JobStatus.COMPLETED),
        ],
        "retry": [request(job, occurred_at=at(3), attempt=2)],
        "control": [cancel(job, occurred_at=at(6))],
    }


async def snapshot(engine: AsyncEngine, group: str, job_ids: Sequence[uuid.UUID]) -> object:
    async with engine.connect() as connection:
        jobs = (
            await connection.execute(
                select(jobs_table).where(jobs_table.c.id.in_(job_ids)).order_by(jobs_table.c.id)
            )
        ).all()
        errors = (
            await connection.execute(
                select(error_logs_table)
                .where(error_logs_table.c.job_id.in_(job_ids))
                .order_by(error_logs_table.c.id)
            )
        ).all()
        offsets = (
            await connection.execute(
                select(projector_offsets_table).where(
                    projector_offsets_table.c.consumer_group == group
                )
            )
        ).all()
    return (jobs, errors, [(o.topic, o.partition, o.next_offset) for o in offsets])


async def test_same_batch_twice_changes_nothing(engine: AsyncEngine) -> None:
    topics = Topics()
    jobs = [uuid.uuid4() for _ in range(3)]
    batch = [
        topics.record(topic, event)
        for job in jobs
        for topic, events in job_history(job).items()
        for event in events
    ]

    first = await apply_batch(engine, topics.group, batch)
    before = await snapshot(engine, topics.group, jobs)
    again = await apply_batch(engine, topics.group, batch)
    after = await snapshot(engine, topics.group, jobs)

    assert (first.applied, first.skipped, first.jobs_written) == (len(batch), 0, 3)
    assert (again.applied, again.skipped, again.jobs_written) == (0, len(batch), 0)
    assert before == after
    for job in jobs:
        stored = await get_job(engine, job, owner=None)
        expected = fold_in_order([e for events in job_history(job).values() for e in events])
        assert stored == expected
        assert stored is not None
        assert stored.status == "completed"
        assert stored.result is not None


async def test_batches_in_any_topic_order_give_the_rows_of_the_natural_order(
    engine: AsyncEngine,
) -> None:
    topics = Topics()
    job = uuid.uuid4()
    history = job_history(job)
    # status first, split over two batches that overlap (a redelivery), request last
    statuses = [topics.record("status", e) for e in history["status"]]
    control = [topics.record("control", e) for e in history["control"]]
    retry = [topics.record("retry", e) for e in history["retry"]]
    requests = [topics.record("requests", e) for e in history["requests"]]

    await apply_batch(engine, topics.group, statuses[:3] + control)
    overlap = await apply_batch(engine, topics.group, statuses[1:] + retry)
    early = await get_job(engine, job, owner=None)
    await apply_batch(engine, topics.group, requests)

    assert (overlap.applied, overlap.skipped) == (2, 2)
    assert early is not None
    assert early.status == "completed"
    assert early.request_attempt == 2  # the retry request filled in until the original came
    assert await get_job(engine, job, owner=None) == fold_in_order(
        [e for events in history.values() for e in events]
    )
    assert await get_job(engine, job, owner="alice") is not None
    assert await get_job(engine, job, owner="mallory") is None


async def test_a_dead_letter_is_exactly_one_row(engine: AsyncEngine) -> None:
    topics = Topics()
    job = uuid.uuid4()
    source = SourcePosition(topics.name("retry"), 3, 17)
    letter = dead_letter(job, occurred_at=at(9), source=source, with_request=True)
    # delivered, redelivered, and produced twice (a producer retry: same source)
    first = topics.record("dlq", letter, key=job)
    second = topics.record("dlq", letter, key=job)
    await apply_batch(engine, topics.group, [first, second])
    await apply_batch(engine, topics.group, [first, second])

    page = await list_errors(engine, job_id=job)
    assert len(page.items) == 1
    entry = page.items[0].row
    assert (entry.source_topic, entry.source_partition, entry.source_offset) == (
        source.topic,
        3,
        17,
    )
    assert entry.raw_payload == letter.original_value
    assert entry.request is not None
    assert entry.request["job_id"] == str(job)
    # the job row exists (a stub: no request seen yet) and carries the error
    stub = await get_job(engine, job, owner=None)
    assert stub is not None
    assert (stub.status, stub.error_type, stub.has_request) == ("pending", "EngineError", False)


async def test_dead_letter_of_no_job_or_a_non_uuid_job_still_lands(engine: AsyncEngine) -> None:
    topics = Topics()
    no_job = dead_letter(None, occurred_at=at(1), source=SourcePosition(topics.name("x"), 0, 1))
    other = dead_letter(
        uuid.uuid4(), occurred_at=at(1), source=SourcePosition(topics.name("x"), 0, 2)
    )
    bad_job = dataclasses.replace(other, job_id="job-9")
    await apply_batch(
        engine, topics.group, [topics.record("dlq", no_job), topics.record("dlq", bad_job)]
    )
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(error_logs_table.c.job_id, error_logs_table.c.error_message)
                .where(error_logs_table.c.source_topic == topics.name("x"))
                .order_by(error_logs_table.c.source_offset)
            )
        ).all()
    assert [r.job_id for r in rows] == [None, None]
    assert "job-9" in rows[1].error_message


async def test_undecodable_record_becomes_an_error_row_and_a_dead_letter_supersedes_it(
    engine: AsyncEngine,
) -> None:
    topics = Topics()
    job = uuid.uuid4()
    garbage = Undecodable(
        raw=b"\x00\x00\x00\x00\x07junk", error_type="DecodeError", error_message="bad"
    )
    record = topics.record("status", garbage, key=job)
    await apply_batch(engine, topics.group, [record])
    await apply_batch(engine, topics.group, [record])

    page = await list_errors(engine, job_id=job)
    assert len(page.items) == 1
    row = page.items[0].row
    assert row.error_type == "projector.DecodeError"
    assert row.raw_payload == garbage.raw
    assert (row.source_topic, row.source_offset) == (record.topic, record.offset)

    # a worker dead-letters the same record later: its richer row replaces ours
    source = SourcePosition(record.topic, record.partition, record.offset)
    letter = dead_letter(job, occurred_at=at(50), source=source, error_type="SchemaError")
    await apply_batch(engine, topics.group, [topics.record("dlq", letter, key=job)])
    page = await list_errors(engine, job_id=job)
    assert [entry.row.error_type for entry in page.items] == ["SchemaError"]


async def test_event_with_a_non_uuid_job_id_becomes_an_error_row(engine: AsyncEngine) -> None:
    topics = Topics()
    event = request(uuid.uuid4(), occurred_at=at(0))
    bad = dataclasses.replace(event, job_id="job-17")
    outcome = await apply_batch(engine, topics.group, [topics.record("requests", bad)])
    assert (outcome.applied, outcome.jobs_written, outcome.errors_written) == (1, 0, 1)
    async with engine.connect() as connection:
        error_type = await connection.scalar(
            select(error_logs_table.c.error_type).where(
                error_logs_table.c.source_topic == topics.name("requests")
            )
        )
    assert error_type == "projector.InvalidJobId"


async def test_a_clashing_idempotency_key_goes_to_the_earliest_job(engine: AsyncEngine) -> None:
    topics = Topics()
    key = f"key-{topics.suffix}"
    older, newer = uuid.uuid4(), uuid.uuid4()
    newer_request = request(newer, occurred_at=at(20), idempotency_key=key)
    older_request = request(older, occurred_at=at(10), idempotency_key=key)
    await apply_batch(engine, topics.group, [topics.record("requests", newer_request)])
    await apply_batch(engine, topics.group, [topics.record("requests", older_request)])

    kept = await get_job(engine, older, owner="alice")
    lost = await get_job(engine, newer, owner="alice")
    assert kept is not None
    assert lost is not None
    assert (kept.idempotency_key, lost.idempotency_key) == (key, None)


async def test_heartbeats_only_move_the_offset(engine: AsyncEngine) -> None:
    from schemas.events import PoolStats, WorkerHeartbeat  # noqa: PLC0415

    topics = Topics()
    beat = WorkerHeartbeat(
        worker_id="w",
        host="h",
        pid=1,
        occurred_at=at(1),
        engines=["faster-whisper"],
        loaded_models=[],
        pool=PoolStats(0, 0, 0, 0, 0, 0.0),
        in_flight=0,
        concurrency=1,
        processed=0,
        failed=0,
    )
    outcome = await apply_batch(engine, topics.group, [topics.record("workers", beat)])
    assert (outcome.applied, outcome.jobs_written, outcome.errors_written) == (1, 0, 0)
    async with engine.connect() as connection:
        next_offset = await connection.scalar(
            select(func.max(projector_offsets_table.c.next_offset)).where(
                projector_offsets_table.c.consumer_group == topics.group
            )
        )
    assert next_offset == 1
