"""Reading and resolving ``error_logs`` (the DLQ mirror) for the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.mapping import error_from_mapping
from db.models import error_logs_table
from db.rows import ErrorLogRow

MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class ErrorLogEntry:
    id: int
    resolved: bool
    resolved_at: datetime | None
    row: ErrorLogRow


@dataclass(frozen=True, slots=True)
class ErrorPage:
    items: list[ErrorLogEntry]
    next_before_id: int | None
    """Pass back as ``before_id`` for the next page; None on the last page."""


async def list_errors(
    engine: AsyncEngine,
    *,
    resolved: bool | None = None,
    job_id: uuid.UUID | None = None,
    error_type: str | None = None,
    created_after: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> ErrorPage:
    """Error rows newest first (by id), optionally only (un)resolved ones, one job's, one
    error type's, or those created after a time."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}, got {limit}")
    table = error_logs_table
    stmt = select(table).order_by(table.c.id.desc()).limit(limit + 1)
    if resolved is not None:
        stmt = stmt.where(table.c.resolved == resolved)
    if job_id is not None:
        stmt = stmt.where(table.c.job_id == job_id)
    if error_type is not None:
        stmt = stmt.where(table.c.error_type == error_type)
    if created_after is not None:
        stmt = stmt.where(table.c.created_at >= created_after)
    if before_id is not None:
        stmt = stmt.where(table.c.id < before_id)
    async with engine.connect() as connection:
        found = [_entry(m) for m in (await connection.execute(stmt)).mappings()]
    items = found[:limit]
    return ErrorPage(items, items[-1].id if len(found) > limit else None)


async def get_error(engine: AsyncEngine, error_id: int) -> ErrorLogEntry | None:
    table = error_logs_table
    async with engine.connect() as connection:
        found = (
            (await connection.execute(select(table).where(table.c.id == error_id)))
            .mappings()
            .first()
        )
    return _entry(found) if found is not None else None


def _entry(mapping: Mapping[Any, Any]) -> ErrorLogEntry:
    return ErrorLogEntry(
        id=mapping["id"],
        resolved=mapping["resolved"],
        resolved_at=mapping["resolved_at"],
        row=error_from_mapping(mapping),
    )


async def resolve_error(engine: AsyncEngine, error_id: int, *, at: datetime) -> bool:
    """Mark an error row resolved; False if there is no such row.  Resolving twice keeps
    the first ``resolved_at``."""
    table = error_logs_table
    async with engine.begin() as connection:
        result = await connection.execute(
            update(table)
            .where(table.c.id == error_id, table.c.resolved.is_(False))
            .values(resolved=True, resolved_at=at)
            .returning(table.c.id)
        )
        if result.first() is not None:
            return True
        exists = await connection.execute(select(table.c.id).where(table.c.id == error_id))
        return exists.first() is not None
