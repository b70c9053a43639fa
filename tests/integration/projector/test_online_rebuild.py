"""``replay --rebuild`` beside the live projector: events keep coming, reads keep being
taken, and after the swap the tables equal a fold from scratch and the projector goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.api_support import insert_new_job
from db.errors import RebuildRunningError
from db.models import error_logs_table, jobs_table, projector_offsets_table, results_table
from db.projector import operations
from db.projector.config import ProjectorConfig
from db.projector.rebuild import REBUILD_LOCK_KEY, build_shadow, rebuild, swap_in
from schemas.codec import EventCodec
from schemas.events import JobStatus, utc_now
from tests.integration.projector.helpers import (
    EventProducer,
    StartProjector,
    error_ids_by_position,
    eventually,
    projector_config,
    stored_offsets,
    table_rows,
)
from tests.support.fold_events import at, request, status
from whisperstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def produce_job(producer: EventProducer, settings: Settings, n: int) -> tuple[uuid.UUID, int]:
    """A job's request and status events (every other one completes); (its id, records)."""
    job = uuid.uuid4()
    producer.send(settings.topic_requests_normal, request(job, occurred_at=at(n)))
    producer.send(settings.topic_status, status(job, occurred_at=at(n + 1), seq=0))
    if n % 2:
        return job, 2
    done = status(job, occurred_at=at(n + 2), seq=1, status=JobStatus.COMPLETED)
    producer.send(settings.topic_status, done)
    return job, 3


@dataclass
class Flow:
    """Jobs produced one after another until stopped."""

    producer: EventProducer
    settings: Settings
    jobs: list[uuid.UUID] = field(default_factory=list)
    records: int = 0

    def produce(self, count: int) -> None:
        for _ in range(count):
            job, records = produce_job(self.producer, self.settings, len(self.jobs))
            self.jobs.append(job)
            self.records += records
        self.producer.flush()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.produce(2)
            await asyncio.sleep(0.05)


@dataclass
class Reads:
    """Reads of the job ids and the result ids, taken one after another until stopped.

    A job (or result) seen by one read and absent from a later one is a miss."""

    engine: AsyncEngine
    count: int = 0
    jobs: set[uuid.UUID] = field(default_factory=set)
    results: set[uuid.UUID] = field(default_factory=set)
    misses: list[tuple[int, uuid.UUID]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self.engine.connect() as connection:
                jobs = set((await connection.execute(select(jobs_table.c.id))).scalars())
                results = set((await connection.execute(select(results_table.c.job_id))).scalars())
            self.count += 1
            self.misses += [(self.count, job) for job in (self.jobs - jobs)]
            self.misses += [(self.count, job) for job in (self.results - results)]
            self.jobs |= jobs
            self.results |= results
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(*loops: Flow | Reads) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def folded(engine: AsyncEngine, config: ProjectorConfig, records: int) -> None:
    async def all_in() -> bool:
        return sum((await stored_offsets(engine, config.group_id)).values()) >= records

    await eventually(all_in, what=f"{records} records folded")


async def test_rebuild_while_the_projector_runs_and_jobs_flow(
    fresh_topics: Settings,
    fresh_database_url: str,
    engine: AsyncEngine,
    producer: EventProducer,
    start_projector: StartProjector,
) -> None:
    flow = Flow(producer, fresh_topics)
    flow.produce(150)
    config = projector_config(fresh_topics, batch_max_events=50)
    live = await start_projector(config, engine)
    await folded(engine, config, flow.records)
    settings = fresh_topics.model_copy(
        update={
            "database_url": fresh_database_url,
            "projector_group_id": config.group_id,
            "projector_batch_max_events": config.batch_max_events,
        }
    )

    reads = Reads(engine)
    async with running(flow, reads):
        before = reads.count
        report = await asyncio.to_thread(operations.run_rebuild, settings)
        during = reads.count - before
        # the live projector goes on folding after the swap: a job produced now shows up
        after_swap = len(flow.jobs)

        async def newer_job_read() -> bool:
            return any(job in reads.jobs for job in flow.jobs[after_swap + 4 :])

        await eventually(newer_job_read, what="a job produced after the swap")
    await folded(engine, config, flow.records)

    assert during > 5, "no reads were taken during the rebuild"
    assert reads.misses == []
    assert report.records >= 150 * 2
    assert report.passes >= 1  # the first fold was more than a batch: a catch-up pass
    assert report.jobs >= 150
    rows = await table_rows(engine)
    assert {row["id"] for row in rows["jobs"]} == set(flow.jobs)
    await asyncio.to_thread(migrate.check, fresh_database_url)
    assert await live.stop() is not None

    # a fold from scratch by a projector on emptied tables gives the same rows
    async with engine.begin() as connection:
        await connection.execute(delete(jobs_table))
        await connection.execute(delete(projector_offsets_table))
    again = await start_projector(config, engine)
    await folded(engine, config, flow.records)
    await again.stop()
    assert await table_rows(engine) == rows


async def test_swap_folds_what_the_live_projector_had_and_the_shadow_lacked(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    codec: EventCodec,
    start_projector: StartProjector,
) -> None:
    flow = Flow(producer, fresh_topics)
    flow.produce(10)
    config = projector_config(fresh_topics)
    live = await start_projector(config, engine)
    await folded(engine, config, flow.records)

    shadowed, _ = await build_shadow(config, engine, codec)
    assert shadowed == flow.records
    flow.produce(6)  # folded by the live projector only: the tail
    await folded(engine, config, flow.records)
    expected = await table_rows(engine)
    offsets = await stored_offsets(engine, config.group_id)

    swap = await swap_in(config, engine, codec)

    assert (swap.tail, swap.jobs) == (flow.records - shadowed, 16)
    assert 0 <= swap.reads_paused_s <= swap.writes_paused_s
    assert await table_rows(engine) == expected
    assert await stored_offsets(engine, config.group_id) == offsets
    # the live projector neither refolds nor skips anything after the swap
    applied, skipped = live.stats.applied, live.stats.skipped
    flow.produce(1)
    await folded(engine, config, flow.records)

    async def counted() -> bool:
        return live.stats.applied == applied + 3

    await eventually(counted, what="the live projector's count of the new job")
    assert live.stats.skipped == skipped
    assert len((await table_rows(engine))["jobs"]) == 17


async def test_error_rows_keep_their_ids_and_new_ones_follow_them(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    codec: EventCodec,
    start_projector: StartProjector,
) -> None:
    def poison(n: int) -> None:
        producer.raw(fresh_topics.topic_status, b"{not json %d" % n, key=b"not-a-uuid")
        producer.flush()

    config = projector_config(fresh_topics)
    poison(0)
    first = await start_projector(config, engine)
    await folded(engine, config, 1)
    await first.stop()
    async with engine.begin() as connection:  # an id a fold from scratch would not give
        await connection.execute(update(error_logs_table).values(id=error_logs_table.c.id + 50))
    (live_id,) = (await error_ids_by_position(engine)).values()
    poison(1)  # folded by the shadow only

    await build_shadow(config, engine, codec)
    await swap_in(config, engine, codec)

    # same key, same partition: position order is production order
    ids = [id_ for _, id_ in sorted((await error_ids_by_position(engine)).items())]
    assert ids[0] == live_id
    assert ids[1] > live_id
    # the projector's own next error row takes the next id
    again = await start_projector(config, engine)
    poison(2)
    await folded(engine, config, 3)
    await again.stop()
    ids = [id_ for _, id_ in sorted((await error_ids_by_position(engine)).items())]
    assert len(ids) == 3
    assert ids[2] > ids[1]


async def test_a_second_rebuild_at_the_same_time_is_refused(
    fresh_topics: Settings, engine: AsyncEngine, codec: EventCodec
) -> None:
    config = projector_config(fresh_topics)
    async with engine.connect() as holder:  # as a rebuild in progress holds it
        await holder.execute(select(func.pg_advisory_lock(REBUILD_LOCK_KEY)))
        with pytest.raises(RebuildRunningError, match="another"):
            await rebuild(config, engine, codec)
        await holder.execute(select(func.pg_advisory_unlock(REBUILD_LOCK_KEY)))
    report = await rebuild(config, engine, codec)
    assert (report.records, report.jobs) == (0, 0)


async def test_a_long_read_makes_the_swap_roll_back_and_try_again(
    fresh_topics: Settings,
    engine: AsyncEngine,
    producer: EventProducer,
    codec: EventCodec,
    start_projector: StartProjector,
    *,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = Flow(producer, fresh_topics)
    flow.produce(3)
    config = projector_config(fresh_topics)
    await start_projector(config, engine)
    await folded(engine, config, flow.records)
    await build_shadow(config, engine, codec)
    expected = await table_rows(engine)

    async def retried() -> bool:
        return "swap lost a lock race" in caplog.text

    with caplog.at_level(logging.WARNING, logger="db.projector.rebuild"):
        async with engine.connect() as long_read:
            # its transaction holds the jobs table's read lock until it ends
            await long_read.execute(select(jobs_table.c.id))
            swapping = asyncio.create_task(swap_in(config, engine, codec))
            await eventually(retried, what="the swap to give up its first try")
            assert not swapping.done()
        swap = await swapping
    assert swap.jobs == 3
    assert await table_rows(engine) == expected


async def test_a_job_the_api_just_wrote_survives_the_swap_and_an_old_stray_row_does_not(
    fresh_topics: Settings, engine: AsyncEngine, producer: EventProducer, codec: EventCodec
) -> None:
    flow = Flow(producer, fresh_topics)
    flow.produce(3)
    config = projector_config(fresh_topics)
    # the API's read-your-writes row of a job it has just accepted: its request is on its
    # way to the topic (not produced here, as if the projector had not got to it yet)
    just_accepted = uuid.uuid4()
    assert await insert_new_job(engine, request(just_accepted, occurred_at=utc_now()))
    # a row no topic holds and nobody has touched for long (its events left by retention)
    stray = uuid.uuid4()
    assert await insert_new_job(engine, request(stray, occurred_at=at(0)))

    await rebuild(config, engine, codec)

    rows = {row["id"]: row["status"] for row in (await table_rows(engine))["jobs"]}
    assert rows.get(just_accepted) == JobStatus.PENDING.value
    assert stray not in rows
    assert set(flow.jobs) <= set(rows)
