"""What the API needs from the job tables beyond the read queries.

``apply_now`` folds events into their job rows at once, through the same pure fold the
projector uses, so a client can read its job right after the API has published it
(read-your-writes).  It records no projector offsets: the projector folds the same
events again later, and the fold is idempotent, so the row ends the same.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db import fold
from db.fold import JobEvent
from db.idempotency_keys import settle_idempotency_keys
from db.mapping import (
    JOB_COLUMNS,
    RESULT_COLUMNS,
    job_from_mapping,
    job_values,
    result_from_mapping,
)
from db.models import jobs_table, projector_offsets_table, results_table
from db.rows import JobRow
from schemas.events import JobStatus, TranscriptionRequested


async def apply_now(engine: AsyncEngine, events: Sequence[JobEvent]) -> list[JobRow]:
    """Fold ``events`` (all naming a job) into their rows in one transaction."""
    by_job: dict[uuid.UUID, list[JobEvent]] = {}
    for event in events:
        job_id = fold.job_id_of(event)
        if job_id is None:
            raise ValueError(f"event {event.event_id} names no job")
        by_job.setdefault(job_id, []).append(event)
    if not by_job:
        return []
    table = jobs_table
    async with engine.begin() as connection:
        placeholders = [
            {
                "id": job_id,
                "status": JobStatus.PENDING.value,
                "created_at": job_events[0].occurred_at,
                "updated_at": job_events[0].occurred_at,
            }
            for job_id, job_events in sorted(by_job.items())
        ]
        inserted = await connection.execute(
            pg_insert(table)
            .on_conflict_do_nothing(index_elements=[table.c.id])
            .returning(table.c.id),
            placeholders,
        )
        created = set(inserted.scalars())
        rows = await connection.execute(
            select(table)
            .where(table.c.id.in_(sorted(by_job)))
            .order_by(table.c.id)
            .with_for_update()
        )
        loaded = {m["id"]: job_from_mapping(m) for m in rows.mappings() if m["id"] not in created}
        changed: list[JobRow] = []
        for job_id, job_events in by_job.items():
            row: JobRow | None = loaded.get(job_id)
            for event in job_events:
                row = fold.apply(row, event)
            if row is not None and (job_id in created or loaded.get(job_id) != row):
                changed.append(row)
        changed = await settle_idempotency_keys(connection, changed, loaded)
        if changed:
            stmt = pg_insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={name: stmt.excluded[name] for name in JOB_COLUMNS if name != "id"},
            )
            await connection.execute(stmt, [job_values(row) for row in changed])
    return changed


async def insert_new_job(engine: AsyncEngine, event: TranscriptionRequested) -> bool:
    """Read-your-writes for a job id the API has just made, in one statement.

    The row is the fold of the request alone.  If a row exists already (the projector
    was faster), that row has folded this request too, so nothing is written.  Only for
    requests without an idempotency key: a key may need settling (see
    :func:`apply_now`).  Returns whether a row was inserted.
    """
    if event.idempotency_key is not None:
        raise ValueError("a request with an idempotency key goes through apply_now")
    row = fold.apply(None, event)
    if row is None:
        raise ValueError(f"event {event.event_id} names no job")
    table = jobs_table
    stmt = (
        pg_insert(table)
        .values(job_values(row))
        .on_conflict_do_nothing(index_elements=[table.c.id])
        .returning(table.c.id)
    )
    async with engine.begin() as connection:
        return (await connection.execute(stmt)).first() is not None


@functools.cache
def _owned_job_statement() -> Select[tuple[object, ...]]:
    # Built once: constructing this select (a join and a dozen labelled columns) costs
    # more than running it, and GET /transcribe/{id} runs it on every request.
    jobs = jobs_table
    results = results_table
    result_columns = [results.c[name].label(f"result_{name}") for name in RESULT_COLUMNS]
    return (
        select(jobs, *result_columns)
        .select_from(jobs.outerjoin(results, results.c.job_id == jobs.c.id))
        .where(jobs.c.id == bindparam("job_id"), jobs.c.owner == bindparam("owner"))
    )


async def get_owned_job(engine: AsyncEngine, job_id: uuid.UUID, owner: str) -> JobRow | None:
    """As :func:`db.job_queries.get_job` for one owner, with a prepared statement."""
    async with engine.connect() as connection:
        found = (
            (await connection.execute(_owned_job_statement(), {"job_id": job_id, "owner": owner}))
            .mappings()
            .first()
        )
    if found is None:
        return None
    result = None
    if found["result_job_id"] is not None:
        result = result_from_mapping({name: found[f"result_{name}"] for name in RESULT_COLUMNS})
    return job_from_mapping(found, result)


async def find_idempotent_job(
    engine: AsyncEngine, *, owner: str, idempotency_key: str, created_after: datetime
) -> uuid.UUID | None:
    """The job ``owner`` created with ``idempotency_key`` after ``created_after``."""
    table = jobs_table
    stmt = (
        select(table.c.id)
        .where(
            table.c.owner == owner,
            table.c.idempotency_key == idempotency_key,
            table.c.created_at > created_after,
        )
        .order_by(table.c.created_at, table.c.id)
        .limit(1)
    )
    async with engine.connect() as connection:
        return (await connection.execute(stmt)).scalar_one_or_none()


async def projector_last_applied_at(engine: AsyncEngine) -> datetime | None:
    """When the projector last moved any offset (None: it never has)."""
    table = projector_offsets_table
    async with engine.connect() as connection:
        latest: datetime | None = (
            await connection.execute(select(func.max(table.c.updated_at)))
        ).scalar()
    return latest
