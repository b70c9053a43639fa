"""Reading jobs for the API: one job, or a page of jobs newest first."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from db.errors import InvalidCursorError
from db.mapping import RESULT_COLUMNS, job_from_mapping, result_from_mapping
from db.models import jobs_table, results_table
from db.rows import JobRow

MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class JobFilters:
    """Only jobs matching every given value; ``owner=None`` means every owner (admin)."""

    owner: str | None = None
    status: str | None = None
    priority: str | None = None
    model_size: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[JobRow]
    next_cursor: str | None
    """Pass back to :func:`list_jobs` for the next page; None on the last page."""


def _select_with_result() -> Select[tuple[object, ...]]:
    jobs = jobs_table
    results = results_table
    result_columns = [results.c[name].label(f"result_{name}") for name in RESULT_COLUMNS]
    return select(jobs, *result_columns).select_from(
        jobs.outerjoin(results, results.c.job_id == jobs.c.id)
    )


def _row(mapping: dict[str, object]) -> JobRow:
    result = None
    if mapping["result_job_id"] is not None:
        result = result_from_mapping({name: mapping[f"result_{name}"] for name in RESULT_COLUMNS})
    return job_from_mapping(mapping, result)


async def get_job(engine: AsyncEngine, job_id: uuid.UUID, owner: str | None) -> JobRow | None:
    """The job with its result; None if it does not exist or belongs to another owner
    (``owner=None``: any owner)."""
    jobs = jobs_table
    stmt = _select_with_result().where(jobs.c.id == job_id)
    if owner is not None:
        stmt = stmt.where(jobs.c.owner == owner)
    async with engine.connect() as connection:
        found = (await connection.execute(stmt)).mappings().first()
    return _row(dict(found)) if found is not None else None


async def list_jobs(
    engine: AsyncEngine, filters: JobFilters, cursor: str | None = None, limit: int = 50
) -> JobPage:
    """Jobs matching ``filters``, newest first (``created_at``, then id), ``limit`` a page."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}, got {limit}")
    jobs = jobs_table
    stmt = _select_with_result()
    for column, value in (
        (jobs.c.owner, filters.owner),
        (jobs.c.status, filters.status),
        (jobs.c.priority, filters.priority),
        (jobs.c.model_size, filters.model_size),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if filters.created_after is not None:
        stmt = stmt.where(jobs.c.created_at > filters.created_after)
    if filters.created_before is not None:
        stmt = stmt.where(jobs.c.created_at < filters.created_before)
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(jobs.c.created_at, jobs.c.id) < tuple_(created_at, job_id))
    stmt = stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)

    async with engine.connect() as connection:
        found = [_row(dict(m)) for m in (await connection.execute(stmt)).mappings()]
    items = found[:limit]
    more = len(found) > limit
    return JobPage(items, encode_cursor(items[-1]) if more else None)


def encode_cursor(row: JobRow) -> str:
    raw = json.dumps([row.created_at.isoformat(), str(row.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise InvalidCursorError("cursor time has no zone")
        return moment, uuid.UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InvalidCursorError(f"not a cursor this service issued: {cursor!r}") from exc
