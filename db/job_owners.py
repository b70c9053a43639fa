"""Who owns which jobs: what the API's event streams filter a key's events by."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import jobs_table


async def job_owners(engine: AsyncEngine, job_ids: Sequence[str]) -> dict[str, str | None]:
    """The owner of each job in ``job_ids``; a job not (yet) in Postgres is left out."""
    ids = []
    for text in job_ids:
        try:
            ids.append(uuid.UUID(text))
        except ValueError:
            continue  # a job id an upstream producer made up: it has no row
    if not ids:
        return {}
    stmt = select(jobs_table.c.id, jobs_table.c.owner).where(jobs_table.c.id.in_(ids))
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    return {str(row.id): row.owner for row in rows}
