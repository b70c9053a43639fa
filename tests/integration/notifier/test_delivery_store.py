"""The delivery table's guarantees on the real Postgres: leases, the never-twice index,
and a recorded batch that survives one outcome breaking it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.models import webhook_deliveries_table
from notifier.dispatcher import Recorder
from notifier.outcomes import Outcome
from notifier.store import NewDelivery, Recorded, claim_due, job_deliveries, schedule
from schemas.events import utc_now

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=30)


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _new(job_id: uuid.UUID, event_id: str) -> NewDelivery:
    return NewDelivery(
        job_id, event_id, "transcription.completed", "http://hooks.example/x", None, "{}", utc_now()
    )


async def test_a_lease_hides_a_claimed_attempt_and_scheduling_twice_adds_nothing(
    engine: AsyncEngine,
) -> None:
    job_id, event_id = uuid.uuid4(), str(uuid.uuid4())
    async with engine.begin() as connection:
        assert await schedule(connection, [_new(job_id, event_id)], utc_now()) == 1
        # the status event redelivered: the same first attempt, nothing new
        assert await schedule(connection, [_new(job_id, event_id)], utc_now()) == 0
    (claimed,) = await claim_due(engine, 10, LEASE, {}, 8)
    assert not claimed.settled
    assert await claim_due(engine, 10, LEASE, {}, 8) == []


async def test_a_claim_leaves_a_host_no_more_than_its_share(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await schedule(
            connection,
            [
                NewDelivery(
                    uuid.uuid4(),
                    str(uuid.uuid4()),
                    "transcription.completed",
                    url,
                    None,
                    "{}",
                    utc_now(),
                )
                for url in ["http://slow.example/x"] * 10 + ["http://fast.example/y"] * 3
            ],
            utc_now(),
        )
    # one of slow's is in flight already: 2 more of it, and fast's 3, though 10 were asked
    claimed = await claim_due(engine, 10, LEASE, {"slow.example:80": 1}, 3)
    assert sorted(d.host for d in claimed) == ["fast.example:80"] * 3 + ["slow.example:80"] * 2
    # slow at its share: none of its 8 others, however many slots are free
    assert await claim_due(engine, 10, LEASE, {"slow.example:80": 3}, 3) == []
    # a slot of slow's freed: one more
    (one,) = await claim_due(engine, 10, LEASE, {"slow.example:80": 2}, 3)
    assert one.host == "slow.example:80"


async def test_two_successes_of_one_event_in_one_batch_record_one_and_skip_the_other(
    engine: AsyncEngine,
) -> None:
    job_id, event_id = uuid.uuid4(), str(uuid.uuid4())
    other_job = uuid.uuid4()
    async with engine.begin() as connection:
        await schedule(connection, [_new(job_id, event_id), _new(other_job, "e2")], utc_now())
        # a second live attempt of the same event and URL (no code path makes one; the
        # index is the last line of the never-twice guarantee)
        await connection.execute(
            insert(webhook_deliveries_table).values(
                job_id=job_id,
                event_id=event_id,
                event_type="transcription.completed",
                url="http://hooks.example/x",
                host="hooks.example:80",
                attempt=2,
                status="pending",
                body="{}",
                next_attempt_at=utc_now(),
                created_at=utc_now(),
            )
        )
    claimed = await claim_due(engine, 10, LEASE, {}, 8)
    assert len(claimed) == 3
    recorder = Recorder(engine, lambda: False)
    running = asyncio.create_task(recorder.run())
    try:
        await asyncio.gather(
            *(
                recorder.add(Recorded(d, Outcome.SUCCEEDED, 200, 2.0, None, utc_now(), None))
                for d in claimed
            )
        )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    statuses = sorted(r.status for r in await job_deliveries(engine, job_id))
    assert statuses == ["skipped", "succeeded"]
    (other,) = await job_deliveries(engine, other_job)
    assert other.status == "succeeded"
