"""Rebuild by replay equals the live projection; replay from a time or from offsets."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.errors import ProjectorGroupActiveError
from db.models import error_logs_table, jobs_table
from db.projector import operations
from db.projector.groups import ensure_group_inactive
from schemas.events import JobStatus, SourcePosition
from tests.integration.projector.helpers import (
    EventProducer,
    StartProjector,
    error_ids_by_position,
    eventually,
    projector_config,
    stored_offsets,
    table_rows,
)
from tests.support.fold_events import at, cancel, dead_letter, job_error, request, status
from whisperstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def produce_history(producer: EventProducer, settings: Settings, jobs: int) -> int:
    """Completed, failed-after-retry and cancelled jobs, dead letters and a poison record."""
    sent = 0
    for n in range(jobs):
        job = uuid.uuid4()
        producer.send(settings.topic_requests_normal, request(job, occurred_at=at(n)))
        producer.send(settings.topic_status, status(job, occurred_at=at(n + 1), seq=0))
        sent += 2
        if n % 3 == 0:
            producer.send(
                settings.topic_status,
                status(job, occurred_at=at(n + 2), seq=1, status=JobStatus.COMPLETED),
            )
            sent += 1
        elif n % 3 == 1:
            failed = status(
                job,
                occurred_at=at(n + 2),
                seq=1,
                status=JobStatus.FAILED,
                error=job_error(retryable=False),
            )
            source = SourcePosition(topic=settings.topic_requests_normal, partition=0, offset=n)
            producer.send(settings.topic_status, failed)
            producer.send(
                settings.topic_dlq, dead_letter(job, occurred_at=at(n + 3), source=source)
            )
            sent += 2
        else:
            producer.send(settings.topic_control, cancel(job, occurred_at=at(n + 2)))
            sent += 1
    producer.raw(settings.topic_status, b"{not json", key=b"not-a-uuid")
    producer.flush()
    return sent + 1


async def test_rebuild_gives_the_live_rows_and_swaps_them_in(
    fresh_topics: Settings,
    fresh_database_url: str,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    sent = produce_history(producer, fresh_topics, 30)
    config = projector_config(fresh_topics, batch_max_events=7)
    live = await start_projector(config, engine)

    async def caught_up() -> bool:
        return sum((await stored_offsets(engine, config.group_id)).values()) >= sent

    await eventually(caught_up, what="the live projection")
    await live.stop()
    async with engine.begin() as connection:
        await connection.execute(
            update(error_logs_table)
            .where(error_logs_table.c.error_type == "EngineError")
            .values(resolved=True, resolved_at=datetime(2025, 2, 1, tzinfo=UTC))
        )
        # ids a fold in another order would not give
        await connection.execute(update(error_logs_table).values(id=error_logs_table.c.id + 1000))
    expected = await table_rows(engine)
    offsets = await stored_offsets(engine, config.group_id)
    error_ids = await error_ids_by_position(engine)
    assert any(row["resolved"] for row in expected["errors"])
    assert any(row["error_type"].startswith("projector.") for row in expected["errors"])

    # damage the live tables: the rebuild must not depend on them
    async with engine.begin() as connection:
        await connection.execute(delete(jobs_table).where(jobs_table.c.status == "completed"))

    settings = fresh_topics.model_copy(
        update={"database_url": fresh_database_url, "projector_group_id": config.group_id}
    )
    report = await asyncio.to_thread(operations.run_rebuild, settings)

    assert report.records == sent
    assert await table_rows(engine) == expected
    # an error row keeps its id (ids are what operators resolve rows by)
    assert await error_ids_by_position(engine) == error_ids
    assert await stored_offsets(engine, config.group_id) == offsets
    await asyncio.to_thread(migrate.check, fresh_database_url)

    # the projector carries on from the rebuilt offsets: nothing again, new events once
    producer.send(fresh_topics.topic_status, status(uuid.uuid4(), occurred_at=at(500)))
    producer.flush()
    after = await start_projector(config, engine)

    async def one_more() -> bool:
        return after.stats.applied >= 1

    await eventually(one_more, what="the next event")
    stats = await after.stop()
    assert (stats.applied, stats.skipped) == (1, 0)


async def test_replay_refuses_while_the_projector_runs(
    fresh_topics: Settings, engine: AsyncEngine, start_projector: StartProjector
) -> None:
    config = projector_config(fresh_topics)
    running = await start_projector(config, engine)

    async def assigned() -> bool:
        return bool(running.stats.assignments)

    await eventually(assigned, what="the projector to join its group")
    with pytest.raises(ProjectorGroupActiveError, match=config.group_id):
        await asyncio.to_thread(ensure_group_inactive, config.bootstrap_servers, config.group_id)
    await running.stop()
    await asyncio.to_thread(ensure_group_inactive, config.bootstrap_servers, config.group_id)


async def test_replay_from_time_refolds_only_the_later_records(
    fresh_topics: Settings,
    fresh_database_url: str,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    early = produce_history(producer, fresh_topics, 6)
    await asyncio.sleep(1.0)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.2)
    late = produce_history(producer, fresh_topics, 9)
    config = projector_config(fresh_topics)
    first = await start_projector(config, engine)

    async def caught_up() -> bool:
        return sum((await stored_offsets(engine, config.group_id)).values()) >= early + late

    await eventually(caught_up, what="the first pass")
    await first.stop()
    rows = await table_rows(engine)

    settings = fresh_topics.model_copy(
        update={"database_url": fresh_database_url, "projector_group_id": config.group_id}
    )
    offsets = await asyncio.to_thread(operations.reset_to_time, settings, cut)
    assert sum(offsets.values()) == early
    assert await stored_offsets(engine, config.group_id) == offsets

    again = await start_projector(config, engine)

    async def refolded() -> bool:
        return again.stats.applied >= late

    await eventually(refolded, what="the replay")
    stats = await again.stop()
    assert stats.applied == late
    assert await table_rows(engine) == rows


async def test_replay_from_offsets_earliest_refolds_everything(
    fresh_topics: Settings,
    fresh_database_url: str,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    sent = produce_history(producer, fresh_topics, 5)
    config = projector_config(fresh_topics)
    first = await start_projector(config, engine)

    async def caught_up() -> bool:
        return sum((await stored_offsets(engine, config.group_id)).values()) >= sent

    await eventually(caught_up, what="the first pass")
    await first.stop()
    rows = await table_rows(engine)
    settings = fresh_topics.model_copy(
        update={"database_url": fresh_database_url, "projector_group_id": config.group_id}
    )
    start = time.monotonic()
    offsets = await asyncio.to_thread(operations.reset_to_offsets, settings, "earliest")
    assert time.monotonic() - start < 30
    assert set(offsets.values()) == {0}
    assert {topic for topic, _ in offsets} == set(config.topics)
    assert await stored_offsets(engine, config.group_id) == offsets

    again = await start_projector(config, engine)

    async def refolded() -> bool:
        return again.stats.applied >= sent

    await eventually(refolded, what="the replay")
    stats = await again.stop()
    assert stats.applied == sent
    assert await table_rows(engine) == rows
