"""Apply a batch of Kafka records to Postgres in one transaction.

The transaction also moves ``projector_offsets`` (the tracking table), so a batch is
applied exactly once however often Kafka delivers it: a record below its partition's
stored next offset was applied by an earlier transaction and is skipped.

Concurrency: two projector processes may hold different partitions that carry events of
the same job (topics have their own partitioning), so job rows are locked before they
are folded.  A job that has no row yet gets a placeholder row first (``INSERT ... ON
CONFLICT DO NOTHING``), which makes a concurrent writer of the same new job wait for
this transaction instead of both folding from "no row".  Locks are taken in sorted
order; a deadlock that still happens is raised by Postgres and the batch can be retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, any_, bindparam, func, not_, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import fold
from db.errors import InvalidJobIdError
from db.fold import PROJECTOR_ERROR_PREFIX, JobEvent
from db.idempotency_keys import settle_idempotency_keys
from db.mapping import (
    ERROR_COLUMNS,
    JOB_COLUMNS,
    error_values,
    job_from_mapping,
    job_values,
    result_values,
)
from db.models import (
    error_logs_table,
    jobs_table,
    projector_offsets_table,
    results_table,
)
from db.records import BatchOutcome, ProjectionRecord, Undecodable
from db.rows import ErrorLogRow, JobRow
from schemas.events import DeadLetter, JobStatus, WorkerHeartbeat

Position = tuple[str, int]


async def apply_batch(
    engine: AsyncEngine, consumer_group: str, records: Sequence[ProjectionRecord]
) -> BatchOutcome:
    """Fold ``records`` (in delivery order) into the tables, in one transaction."""
    async with engine.begin() as connection:
        return await apply_batch_in(connection, consumer_group, records)


async def apply_batch_in(
    connection: AsyncConnection, consumer_group: str, records: Sequence[ProjectionRecord]
) -> BatchOutcome:
    """As :func:`apply_batch`, inside a transaction the caller owns."""
    if not records:
        return BatchOutcome(applied=0, skipped=0, jobs_written=0, errors_written=0)
    stored = await _lock_offsets(
        connection, consumer_group, {(r.topic, r.partition) for r in records}
    )
    plan = route(records, stored)

    loaded = await _lock_jobs(connection, plan.first_seen)
    folded: dict[uuid.UUID, JobRow] = {}
    for job_id, event in plan.job_events:
        row = fold.apply(folded.get(job_id, loaded.get(job_id)), event)
        if row is not None:
            folded[job_id] = row
    changed = [row for job_id, row in folded.items() if loaded.get(job_id) != row]
    changed = await settle_idempotency_keys(connection, changed, loaded)

    await _upsert_jobs(connection, changed)
    # A loaded row never carries its result, and a row that already has one is terminal
    # and cannot gain another, so any result here is new.
    await _insert_results(connection, [row for row in changed if row.result is not None])
    error_rows = dedupe_error_rows(plan.error_rows)
    await _upsert_errors(connection, error_rows)
    await _store_offsets(connection, consumer_group, plan.next_offsets, stored)
    return BatchOutcome(
        applied=plan.applied,
        skipped=plan.skipped,
        jobs_written=len(changed),
        errors_written=len(error_rows),
    )


@dataclass
class BatchPlan:
    """What a batch asks for, before any row is read (built by :func:`route`)."""

    job_events: list[tuple[uuid.UUID, JobEvent]] = field(default_factory=list)
    error_rows: list[ErrorLogRow] = field(default_factory=list)
    first_seen: dict[uuid.UUID, datetime] = field(default_factory=dict)
    next_offsets: dict[Position, int] = field(default_factory=dict)
    applied: int = 0
    skipped: int = 0


def route(records: Iterable[ProjectionRecord], stored: Mapping[Position, int]) -> BatchPlan:
    """Skip already-applied records and sort the rest into job events and error rows."""
    plan = BatchPlan(next_offsets=dict(stored))
    for record in records:
        position = (record.topic, record.partition)
        if record.offset < plan.next_offsets.get(position, 0):
            plan.skipped += 1
            continue
        plan.next_offsets[position] = record.offset + 1
        plan.applied += 1
        _route_one(plan, record)
    return plan


def _route_one(plan: BatchPlan, record: ProjectionRecord) -> None:
    payload = record.payload
    if isinstance(payload, Undecodable):
        plan.error_rows.append(
            _projector_error(record, payload.raw, payload.error_type, payload.error_message)
        )
        return
    if isinstance(payload, WorkerHeartbeat):
        return
    if isinstance(payload, DeadLetter):
        plan.error_rows.append(fold.dead_letter_row(payload))
    try:
        job_id = fold.job_id_of(payload)
    except InvalidJobIdError as exc:
        if not isinstance(payload, DeadLetter):  # its own row already names the bad id
            plan.error_rows.append(_projector_error(record, None, "InvalidJobId", str(exc)))
        return
    if job_id is not None:
        plan.job_events.append((job_id, payload))
        plan.first_seen.setdefault(job_id, payload.occurred_at)


def _projector_error(
    record: ProjectionRecord, raw: bytes | None, error_type: str, message: str
) -> ErrorLogRow:
    return fold.projector_error_row(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        at=record.timestamp,
        key=record.key,
        raw=raw,
        error_type=error_type,
        error_message=message,
    )


def _is_projector_row(row: ErrorLogRow) -> bool:
    return row.error_type.startswith(PROJECTOR_ERROR_PREFIX)


def dedupe_error_rows(rows: Iterable[ErrorLogRow]) -> list[ErrorLogRow]:
    """One row per source position: a dead letter's row wins over the projector's own,
    otherwise the first one wins (the same rule the upsert applies against the table)."""
    chosen: dict[tuple[str, int, int], ErrorLogRow] = {}
    for row in rows:
        key = (row.source_topic, row.source_partition, row.source_offset)
        held = chosen.get(key)
        if held is None or (_is_projector_row(held) and not _is_projector_row(row)):
            chosen[key] = row
    return list(chosen.values())


async def _lock_offsets(
    connection: AsyncConnection, consumer_group: str, positions: Iterable[Position]
) -> dict[Position, int]:
    """Create missing offset rows, lock all of the batch's, and return their values."""
    table = projector_offsets_table
    stmt = (
        pg_insert(table)
        .on_conflict_do_update(
            index_elements=[table.c.consumer_group, table.c.topic, table.c.partition],
            set_={"next_offset": table.c.next_offset},
        )
        .returning(table.c.topic, table.c.partition, table.c.next_offset)
    )
    params = [
        {
            "consumer_group": consumer_group,
            "topic": topic,
            "partition": partition,
            "next_offset": 0,
            "updated_at": func.now(),
        }
        for topic, partition in sorted(positions)
    ]
    result = await connection.execute(stmt.values(params))
    return {(topic, partition): offset for topic, partition, offset in result}


async def _lock_jobs(
    connection: AsyncConnection, first_seen: Mapping[uuid.UUID, datetime]
) -> dict[uuid.UUID, JobRow]:
    """Lock the rows of these jobs; returns the ones that existed before this batch."""
    if not first_seen:
        return {}
    table = jobs_table
    placeholders = [
        {"id": job_id, "status": JobStatus.PENDING.value, "created_at": t, "updated_at": t}
        for job_id, t in sorted(first_seen.items())
    ]
    inserted = await connection.execute(
        pg_insert(table).on_conflict_do_nothing(index_elements=[table.c.id]).returning(table.c.id),
        placeholders,
    )
    created = set(inserted.scalars())
    existing = sorted(job_id for job_id in first_seen if job_id not in created)
    if not existing:
        return {}
    ids = bindparam("ids", existing, type_=ARRAY(UUID(as_uuid=True)))
    rows = await connection.execute(
        select(table).where(table.c.id == any_(ids)).order_by(table.c.id).with_for_update()
    )
    return {mapping["id"]: job_from_mapping(mapping) for mapping in rows.mappings()}


async def _upsert_jobs(connection: AsyncConnection, rows: Sequence[JobRow]) -> None:
    if not rows:
        return
    stmt = pg_insert(jobs_table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={name: stmt.excluded[name] for name in JOB_COLUMNS if name != "id"},
    )
    await connection.execute(stmt, [job_values(row) for row in rows])


async def _insert_results(connection: AsyncConnection, rows: Sequence[JobRow]) -> None:
    results = [result_values(row.result) for row in rows if row.result is not None]
    if not results:
        return
    stmt = pg_insert(results_table).on_conflict_do_nothing(index_elements=["job_id"])
    await connection.execute(stmt, results)


async def _upsert_errors(connection: AsyncConnection, rows: Sequence[ErrorLogRow]) -> None:
    if not rows:
        return
    table = error_logs_table
    stmt = pg_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_topic", "source_partition", "source_offset"],
        set_={name: stmt.excluded[name] for name in ERROR_COLUMNS},
        where=and_(
            table.c.error_type.startswith(PROJECTOR_ERROR_PREFIX, autoescape=True),
            not_(stmt.excluded.error_type.startswith(PROJECTOR_ERROR_PREFIX, autoescape=True)),
        ),
    )
    await connection.execute(stmt, [error_values(row) for row in rows])


async def _store_offsets(
    connection: AsyncConnection,
    consumer_group: str,
    next_offsets: Mapping[Position, int],
    stored: Mapping[Position, int],
) -> None:
    moved = sorted(p for p, offset in next_offsets.items() if offset != stored.get(p))
    if not moved:
        return
    table = projector_offsets_table
    stmt = pg_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.consumer_group, table.c.topic, table.c.partition],
        set_={
            "next_offset": func.greatest(table.c.next_offset, stmt.excluded.next_offset),
            "updated_at": func.now(),
        },
    )
    params = [
        {
            "consumer_group": consumer_group,
            "topic": topic,
            "partition": partition,
            "next_offset": next_offsets[(topic, partition)],
            "updated_at": func.now(),
        }
        for topic, partition in moved
    ]
    await connection.execute(stmt.values(params))
