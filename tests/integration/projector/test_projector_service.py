"""The projector against the real broker and Postgres: events in, rows out, once."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.lag_queries import lag_report, read_projector_lag
from db.models import error_logs_table, jobs_table
from db.projector.offsets import set_next_offsets
from schemas.events import JobStatus, Priority, SourcePosition
from tests.integration.projector.helpers import (
    EventProducer,
    StartProjector,
    eventually,
    projector_config,
    stored_offsets,
    table_rows,
)
from tests.support.fold_events import at, cancel, dead_letter, request, status
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


def produce_jobs(producer: EventProducer, settings: Settings, jobs: list[uuid.UUID]) -> int:
    """Each job: a request, then processing, progress and completed; returns the count."""
    sent = 0
    for n, job in enumerate(jobs):
        topic = settings.topic_requests_high if n % 2 else settings.topic_requests_normal
        priority = Priority.HIGH if n % 2 else Priority.NORMAL
        producer.send(topic, request(job, occurred_at=at(n), priority=priority))
        for seq, (state, progress) in enumerate(
            [(JobStatus.PROCESSING, 0.0), (JobStatus.PROCESSING, 0.5), (JobStatus.COMPLETED, 1)]
        ):
            producer.send(
                settings.topic_status,
                status(job, occurred_at=at(n + 1 + seq), seq=seq, status=state, progress=progress),
            )
        sent += 4
    producer.flush()
    return sent


async def job_statuses(engine: AsyncEngine) -> dict[uuid.UUID, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(jobs_table.c.id, jobs_table.c.status))
        return {row.id: row.status for row in rows}


async def test_events_become_rows_and_offsets_and_lag_are_stored(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    jobs = [uuid.uuid4() for _ in range(6)]
    cancelled = uuid.uuid4()
    sent = produce_jobs(producer, fresh_topics, jobs)
    producer.send(fresh_topics.topic_requests_normal, request(cancelled, occurred_at=at(50)))
    producer.send(fresh_topics.topic_control, cancel(cancelled, occurred_at=at(51)))
    producer.flush()
    sent += 2
    config = projector_config(fresh_topics, batch_max_events=5)
    running = await start_projector(config, engine)

    async def all_done() -> bool:
        statuses = await job_statuses(engine)
        return all(statuses.get(job) == JobStatus.COMPLETED.value for job in jobs) and (
            cancelled in statuses
        )

    await eventually(all_done, what="every job completed")
    await eventually(lambda: _applied(running.stats.applied, sent), what="all records applied")
    stats = await running.stop()

    assert stats.applied == sent
    assert stats.skipped == 0
    assert stats.batches >= sent // 5
    rows = await table_rows(engine)
    by_id = {row["id"]: row for row in rows["jobs"]}
    assert {row["job_id"] for row in rows["results"]} == set(jobs)
    assert by_id[jobs[1]]["priority"] == Priority.HIGH.value
    assert by_id[cancelled]["status"] == JobStatus.PENDING.value
    assert by_id[cancelled]["cancel_requested_at"] == at(51)

    offsets = await stored_offsets(engine, config.group_id)
    assert sum(offsets.values()) == sent
    lag = await read_projector_lag(engine, config.group_id)
    assert {(row.topic, row.partition) for row in lag} == set(offsets)
    assert all(
        row.lag == 0 and row.high_watermark == offsets[(row.topic, row.partition)] for row in lag
    )
    assert lag_report(lag)["total_lag"] == 0


async def _applied(applied: int, wanted: int) -> bool:
    return applied >= wanted


async def test_a_batch_delivered_again_changes_nothing(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    jobs = [uuid.uuid4() for _ in range(4)]
    sent = produce_jobs(producer, fresh_topics, jobs)
    config = projector_config(fresh_topics)
    first = await start_projector(config, engine)
    await eventually(lambda: _applied(first.stats.applied, sent), what="first pass")
    await first.stop()
    before = await table_rows(engine)
    offsets = await stored_offsets(engine, config.group_id)

    # Kafka's committed offsets are lost: the group would start from the beginning,
    # but the projector seeks to what Postgres holds and applies nothing.
    lost = Consumer(config.consumer_config())
    try:
        lost.commit(offsets=[TopicPartition(t, p, 0) for t, p in offsets], asynchronous=False)
    finally:
        lost.close()
    second = await start_projector(config, engine)
    await eventually(lambda: _assigned(second.stats.assignments), what="an assignment")
    stats = await second.stop()
    sought = {(t, p): o for batch in stats.assignments for t, p, o in batch if (t, p) in offsets}
    assert sought == offsets
    assert stats.applied == 0
    assert await table_rows(engine) == before

    # Every record delivered and folded again (the stored offsets moved back to 0):
    # the rows do not change.
    await set_next_offsets(engine, config.group_id, dict.fromkeys(offsets, 0))
    third = await start_projector(config, engine)
    await eventually(lambda: _applied(third.stats.applied, sent), what="the replay")
    await third.stop()
    assert await table_rows(engine) == before
    assert await stored_offsets(engine, config.group_id) == offsets


async def _assigned(assignments: list[list[tuple[str, int, int]]]) -> bool:
    return bool(assignments)


async def test_undecodable_record_becomes_an_error_row_and_the_projector_goes_on(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    job = uuid.uuid4()
    key = str(job).encode()
    producer.raw(fresh_topics.topic_status, b"\xc3\x01not an event at all", key=key, partition=0)
    producer.send(
        fresh_topics.topic_status,
        status(job, occurred_at=at(2), status=JobStatus.PROCESSING),
        partition=0,
    )
    producer.flush()
    running = await start_projector(projector_config(fresh_topics), engine)
    await eventually(lambda: _applied(running.stats.applied, 2), what="both records")
    await running.stop()

    rows = await table_rows(engine)
    errors = rows["errors"]
    assert [(e["source_topic"], e["source_partition"], e["source_offset"]) for e in errors] == [
        (fresh_topics.topic_status, 0, 0)
    ]
    assert errors[0]["error_type"] == "projector.UndecodableEvent"
    assert errors[0]["job_id"] == job
    assert errors[0]["raw_payload"] == b"\xc3\x01not an event at all"
    assert [row["status"] for row in rows["jobs"]] == [JobStatus.PROCESSING.value]


async def test_each_dead_letter_is_exactly_one_error_row(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    jobs = [uuid.uuid4(), uuid.uuid4()]
    letters = [
        dead_letter(
            job,
            occurred_at=at(10 + n),
            source=SourcePosition(topic=fresh_topics.topic_requests_retry, partition=0, offset=n),
            with_request=True,
        )
        for n, job in enumerate(jobs)
    ]
    for letter in [*letters, letters[0]]:  # the first one delivered to the DLQ twice
        producer.send(fresh_topics.topic_dlq, letter)
    producer.flush()
    running = await start_projector(projector_config(fresh_topics), engine)
    await eventually(lambda: _applied(running.stats.applied, 3), what="three dead letters")
    await running.stop()

    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(error_logs_table.c.job_id, error_logs_table.c.source_offset).order_by(
                    error_logs_table.c.source_offset
                )
            )
        ).all()
    assert rows == [(jobs[0], 0), (jobs[1], 1)]
