"""The read side the API uses: job pages, error log, API keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.api_keys import create_api_key, find_api_key, hash_api_key, revoke_api_key
from db.engine import create_engine
from db.error_queries import list_errors, resolve_error
from db.errors import InvalidCursorError
from db.job_queries import JobFilters, list_jobs
from db.projection_store import apply_batch
from db.records import ProjectionRecord
from schemas.events import JobStatus, Priority, SourcePosition
from tests.support.fold_events import at, dead_letter, request, status

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_list_jobs_pages_newest_first_with_filters(engine: AsyncEngine) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    jobs = [uuid.uuid4() for _ in range(5)]
    records = [
        ProjectionRecord(
            f"requests.{owner}",
            0,
            i,
            at(i),
            None,
            request(
                job,
                occurred_at=at(i),
                owner=owner,
                priority=Priority.HIGH if i % 2 else Priority.NORMAL,
            ),
        )
        for i, job in enumerate(jobs)
    ]
    records.append(
        ProjectionRecord(
            f"status.{owner}",
            0,
            0,
            at(9),
            None,
            status(jobs[0], occurred_at=at(9), status=JobStatus.COMPLETED),
        )
    )
    await apply_batch(engine, f"group-{owner}", records)

    first = await list_jobs(engine, JobFilters(owner=owner), limit=2)
    assert [row.id for row in first.items] == [jobs[4], jobs[3]]
    assert first.next_cursor is not None
    second = await list_jobs(engine, JobFilters(owner=owner), first.next_cursor, limit=2)
    third = await list_jobs(engine, JobFilters(owner=owner), second.next_cursor, limit=2)
    assert [row.id for row in second.items + third.items] == [jobs[2], jobs[1], jobs[0]]
    assert third.next_cursor is None
    assert third.items[-1].result is not None

    high = await list_jobs(engine, JobFilters(owner=owner, priority="high"))
    assert {row.id for row in high.items} == {jobs[1], jobs[3]}
    done = await list_jobs(engine, JobFilters(owner=owner, status="completed"))
    assert [row.id for row in done.items] == [jobs[0]]
    window = await list_jobs(
        engine, JobFilters(owner=owner, created_after=at(1), created_before=at(4))
    )
    assert [row.id for row in window.items] == [jobs[3], jobs[2]]

    with pytest.raises(InvalidCursorError):
        await list_jobs(engine, JobFilters(owner=owner), cursor="not-a-cursor")


async def test_errors_list_and_resolve(engine: AsyncEngine) -> None:
    job = uuid.uuid4()
    topic = f"dlq.{job}"
    letters = [
        dead_letter(job, occurred_at=at(i), source=SourcePosition(f"src.{job}", 0, i))
        for i in range(3)
    ]
    await apply_batch(
        engine,
        f"group-{job}",
        [ProjectionRecord(topic, 0, i, at(i), None, e) for i, e in enumerate(letters)],
    )
    page = await list_errors(engine, job_id=job, limit=2)
    assert [e.row.source_offset for e in page.items] == [2, 1]
    assert page.next_before_id is not None
    rest = await list_errors(engine, job_id=job, before_id=page.next_before_id)
    assert [e.row.source_offset for e in rest.items] == [0]

    assert await resolve_error(engine, page.items[0].id, at=at(50))
    assert await resolve_error(engine, page.items[0].id, at=at(60))
    assert not await resolve_error(engine, -1, at=at(60))
    unresolved = await list_errors(engine, job_id=job, resolved=False)
    assert len(unresolved.items) == 2
    resolved = await list_errors(engine, job_id=job, resolved=True)
    assert [(e.resolved, e.resolved_at) for e in resolved.items] == [(True, at(50))]


async def test_api_keys_create_find_revoke(engine: AsyncEngine) -> None:
    plain, record = await create_api_key(engine, name="ci", at=at(0), is_admin=True)
    assert plain.startswith("wsk_")
    assert plain.startswith(record.key_prefix)

    found = await find_api_key(engine, hash_api_key(plain))
    assert found == record
    assert found is not None
    assert found.active
    assert await find_api_key(engine, hash_api_key(plain + "x")) is None

    assert await revoke_api_key(engine, record.id, at=at(5))
    assert not await revoke_api_key(engine, record.id, at=at(6))
    revoked = await find_api_key(engine, hash_api_key(plain))
    assert revoked is not None
    assert not revoked.active
    assert revoked.revoked_at == at(5)
