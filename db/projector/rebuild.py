"""``whisperstream replay --rebuild``: project every topic from the beginning into shadow
tables while the live projector keeps running, then swap them in.

The shadow tables are the live tables' own metadata created in a separate schema, and
the ordinary batch apply writes to them through ``schema_translate_map``, so rebuild and
live projection share every line of the fold and the store.  Three phases:

1. **Fold**: every topic from its beginning to its current end into the shadow.
2. **Catch up**: passes from the shadow's own stored offsets to the topics' new end,
   until a pass finds at most a batch's worth to fold (or after a few passes).
3. **Swap**, one transaction: lock the live tables in ``EXCLUSIVE`` mode (readers go on
   reading the live rows; the live projector's next batch waits), fold into the shadow
   whatever the live projector had folded and the shadow had not (its *tail*), carry
   over ``error_logs.resolved`` and the pending rows the API has just written for its
   new jobs (read-your-writes, ahead of the projector), then upgrade to
   ``ACCESS EXCLUSIVE`` for the few ``ALTER TABLE ... SET SCHEMA`` statements, the only
   moment when reads wait.

Why the live projector needs no signal: after the tail, the shadow's stored offsets are
at or past the live ones in every partition.  Each projector's batches follow on from
its stored offsets, and a batch skips records below the stored offsets of the table it
writes to, so its next batch after the swap folds exactly what the swapped-in tables
lack: nothing twice, nothing missed.  Its statement that waited on the lock looks the
table names up again once the lock is released and finds the swapped-in tables.

A swap that cannot get its read lock within :data:`READ_LOCK_TIMEOUT` (a long read in
the way), or its write lock within :data:`WRITE_LOCK_TIMEOUT`, or that loses a deadlock,
is rolled back, shadow included, and tried again.

Not projections, left alone: ``api_keys``, ``webhook_deliveries``, ``projector_lag``
(rewritten by the projector itself) and other consumer groups' offsets (copied over).
``error_logs.resolved`` is operator state that no topic holds: it comes from the live rows,
and so do the error rows' ids (operators resolve rows by id).

The renames carry everything attached to a table with it: a foreign key or a view from
any other table onto the projection tables would follow the retired ones and be dropped
with them, so the schema must have none (today only results -> jobs, both swapped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    MetaData,
    Table,
    cast,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateSchema, DropSchema
from sqlalchemy.sql.elements import ColumnElement
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random

from db.errors import RebuildRunningError
from db.models import (
    Base,
    error_logs_table,
    jobs_table,
    projector_offsets_table,
    results_table,
)
from db.projection_store import apply_batch_in
from db.projector.config import ProjectorConfig
from db.projector.decoding import to_record
from db.projector.reader import EndReader
from db.projector.retry import sqlstate
from schemas.codec import EventCodec
from schemas.events import JobStatus

log = logging.getLogger(__name__)

Position = tuple[str, int]

REBUILD_SCHEMA = "projection_rebuild"
RETIRED_SCHEMA = "projection_retired"
PROJECTION_TABLES = (jobs_table, results_table, error_logs_table, projector_offsets_table)
LOCK_ORDER = (projector_offsets_table, jobs_table, results_table, error_logs_table)
"""The order a projector batch takes its locks in, so the swap's lock cannot deadlock it."""

REFLECTED_ROWS_MAX_AGE = timedelta(hours=1)
"""How old a pending row only the live table has may be and still be carried over."""
CATCH_UP_PASSES = 5
SWAP_ATTEMPTS = 5
WRITE_LOCK_TIMEOUT = "30s"
"""Longest wait for the write lock: for the projector's batch in hand (readers pass by)."""
READ_LOCK_TIMEOUT = "2s"
"""Longest wait for the read lock: readers queue behind a swap waiting for it."""

REBUILD_LOCK_KEY = 0x57_52_45_42
"""The Postgres advisory lock one rebuild holds, so that two never share the shadow."""

_LOST_LOCK_RACE = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected


@dataclass(frozen=True, slots=True)
class RebuildReport:
    records: int
    """Records folded into the shadow, all phases together."""
    partitions: int
    jobs: int
    errors: int
    passes: int
    """Catch-up passes after the first fold."""
    swap: Swap


async def rebuild(config: ProjectorConfig, engine: AsyncEngine, codec: EventCodec) -> RebuildReport:
    """Rebuild the projection of ``config.group_id``'s topics and swap it in, whether or
    not the projector runs.  Raises :class:`RebuildRunningError` if another one runs."""
    async with _only_rebuild(engine):
        folded, partitions = await build_shadow(config, engine, codec)
        caught_up, passes = await catch_up(config, engine, codec, folded)
        log.info("shadow caught up after %d passes; swapping", passes)
        swap = await swap_in(config, engine, codec)
    records = folded + caught_up + swap.tail
    log.info("rebuilt %d records from %d partitions", records, partitions)
    return RebuildReport(records, partitions, swap.jobs, swap.errors, passes, swap)


async def build_shadow(
    config: ProjectorConfig, engine: AsyncEngine, codec: EventCodec
) -> tuple[int, int]:
    """Fresh shadow tables, folded from the topics' beginning to their current end;
    (records folded, partitions)."""
    async with engine.begin() as connection:
        await _create_shadow(connection)
    return await _fold_pass(config, engine, codec, {})


async def catch_up(
    config: ProjectorConfig, engine: AsyncEngine, codec: EventCodec, last_pass: int
) -> tuple[int, int]:
    """Fold into the shadow what reached the topics since, in passes, while the last pass
    folded more than a batch; (records folded, passes)."""
    records = passes = 0
    while last_pass > config.batch_max_events and passes < CATCH_UP_PASSES:
        async with engine.connect() as connection, _in_shadow(connection) as shadow:
            start = await _stored_offsets(shadow, config.group_id)
        last_pass, _ = await _fold_pass(config, engine, codec, start)
        records += last_pass
        passes += 1
    return records, passes


@dataclass(frozen=True, slots=True)
class Swap:
    tail: int
    """Records folded while the live tables were locked against writes."""
    jobs: int
    errors: int
    writes_paused_s: float
    """From holding the write lock to the commit: how long the projector's batch waited."""
    reads_paused_s: float
    """From holding the read lock (for the renames) to the commit."""


async def swap_in(config: ProjectorConfig, engine: AsyncEngine, codec: EventCodec) -> Swap:
    """Fold the tail and swap the shadow in, in one transaction, retried when it loses a
    lock race."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda exc: sqlstate(exc) in _LOST_LOCK_RACE),
        stop=stop_after_attempt(SWAP_ATTEMPTS),
        wait=wait_random(0.1, 1.0),
        before_sleep=lambda state: log.warning("swap lost a lock race; trying again"),
        reraise=True,
    ):
        with attempt:
            async with engine.begin() as connection:
                await _lock_live(connection, "EXCLUSIVE", WRITE_LOCK_TIMEOUT)
                writes_from = time.monotonic()
                tail = await _fold_tail(connection, config, codec)
                jobs, errors = await _prepare_swap(connection)
                await _lock_live(connection, "ACCESS EXCLUSIVE", READ_LOCK_TIMEOUT)
                reads_from = time.monotonic()
                await _rename(connection)
            done = time.monotonic()
    swap = Swap(tail, jobs, errors, done - writes_from, done - reads_from)
    log.info(
        "swapped in: writes paused %.3fs, reads %.3fs", swap.writes_paused_s, swap.reads_paused_s
    )
    return swap


@asynccontextmanager
async def _only_rebuild(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.connect() as guard:
        locked = await guard.scalar(select(func.pg_try_advisory_lock(REBUILD_LOCK_KEY)))
        await guard.commit()
        if not locked:
            raise RebuildRunningError("another `whisperstream replay --rebuild` is running")
        try:
            yield
        finally:
            await guard.scalar(select(func.pg_advisory_unlock(REBUILD_LOCK_KEY)))
            await guard.commit()


@asynccontextmanager
async def _in_shadow(connection: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """``connection`` reading and writing the shadow tables until the block ends (the
    option is set on the connection itself: SQLAlchemy 2 has no branched connections)."""
    await connection.execution_options(schema_translate_map={None: REBUILD_SCHEMA})
    try:
        yield connection
    finally:
        await connection.execution_options(schema_translate_map=None)


async def _create_shadow(connection: AsyncConnection) -> None:
    await connection.execute(DropSchema(REBUILD_SCHEMA, cascade=True, if_exists=True))
    await connection.execute(CreateSchema(REBUILD_SCHEMA))
    async with _in_shadow(connection) as shadow:
        await shadow.run_sync(
            lambda sync: Base.metadata.create_all(sync, tables=list(PROJECTION_TABLES))
        )


async def _fold_pass(
    config: ProjectorConfig, engine: AsyncEngine, codec: EventCodec, start: Mapping[Position, int]
) -> tuple[int, int]:
    """Fold from ``start`` to the topics' current end; (records folded, partitions)."""
    reader = EndReader(config, start)
    records = 0
    async for messages in reader.batches():
        batch = [to_record(message, codec) for message in messages]
        async with engine.begin() as connection, _in_shadow(connection) as shadow:
            records += (await apply_batch_in(shadow, config.group_id, batch)).applied
    return records, len(reader.partitions)


async def _stored_offsets(connection: AsyncConnection, group: str) -> dict[Position, int]:
    table = projector_offsets_table
    rows = await connection.execute(
        select(table.c.topic, table.c.partition, table.c.next_offset).where(
            table.c.consumer_group == group
        )
    )
    return {(topic, partition): offset for topic, partition, offset in rows}


async def _fold_tail(
    connection: AsyncConnection, config: ProjectorConfig, codec: EventCodec
) -> int:
    """With the live tables locked against writes, bring the shadow's offsets to at least
    the live ones; the number of records folded."""
    group = config.group_id
    live = await _stored_offsets(connection, group)
    tail = 0
    async with _in_shadow(connection) as shadow:
        held = await _stored_offsets(shadow, group)
        behind = {p: offset for p, offset in live.items() if offset > held.get(p, 0)}
        if behind:
            reader = EndReader(config, held, until=behind)
            async for messages in reader.batches():
                batch = [to_record(message, codec) for message in messages]
                tail += (await apply_batch_in(shadow, group, batch)).applied
            held = await _stored_offsets(shadow, group)
        short = sorted(p for p, offset in live.items() if offset > held.get(p, 0))
        if short:
            # live offsets past the records the topics hold (set by hand): keep them
            log.warning("live offsets past the topics' end kept for %s", short)
            await _raise_offsets(shadow, group, {p: live[p] for p in short})
    live_offsets = projector_offsets_table
    shadow_offsets = _in_schema(projector_offsets_table, REBUILD_SCHEMA)
    await connection.execute(
        insert(shadow_offsets).from_select(
            [column.name for column in live_offsets.columns],
            select(live_offsets).where(live_offsets.c.consumer_group != group),
        )
    )
    return tail


async def _raise_offsets(
    shadow: AsyncConnection, group: str, offsets: Mapping[Position, int]
) -> None:
    table = projector_offsets_table
    stmt = pg_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.consumer_group, table.c.topic, table.c.partition],
        set_={"next_offset": stmt.excluded.next_offset, "updated_at": func.now()},
    )
    await shadow.execute(
        stmt.values(
            [
                {
                    "consumer_group": group,
                    "topic": topic,
                    "partition": partition,
                    "next_offset": offset,
                    "updated_at": func.now(),
                }
                for (topic, partition), offset in sorted(offsets.items())
            ]
        )
    )


def _in_schema(table: Table, schema: str) -> Table:
    return table.to_metadata(MetaData(), schema=schema)


async def _lock_live(connection: AsyncConnection, mode: str, wait_at_most: str) -> None:
    quote = connection.dialect.identifier_preparer.quote
    await connection.execute(text(f"SET LOCAL lock_timeout = '{wait_at_most}'"))
    names = ", ".join(quote(table.name) for table in LOCK_ORDER)
    await connection.execute(text(f"LOCK TABLE {names} IN {mode} MODE"))


async def _prepare_swap(connection: AsyncConnection) -> tuple[int, int]:
    """Everything that can be done while readers still read: the error rows and the
    API's newest job rows carried over, the counts taken; (jobs, error rows) of the shadow."""
    live_schema = await _live_schema(connection)
    await _carry_error_rows(connection, live_schema)
    await _carry_reflected_jobs(connection, live_schema)
    await connection.execute(DropSchema(RETIRED_SCHEMA, cascade=True, if_exists=True))
    await connection.execute(CreateSchema(RETIRED_SCHEMA))
    async with _in_shadow(connection) as shadow:
        return await _count(shadow, jobs_table), await _count(shadow, error_logs_table)


async def _rename(connection: AsyncConnection) -> None:
    """Live tables out, shadow tables in (under ``ACCESS EXCLUSIVE``: keep it short)."""
    quote = connection.dialect.identifier_preparer.quote
    live_schema = quote(await _live_schema(connection))
    for table in PROJECTION_TABLES:
        name = quote(table.name)
        await connection.execute(
            text(f"ALTER TABLE {live_schema}.{name} SET SCHEMA {RETIRED_SCHEMA}")
        )
        await connection.execute(
            text(f"ALTER TABLE {REBUILD_SCHEMA}.{name} SET SCHEMA {live_schema}")
        )
    await connection.execute(DropSchema(RETIRED_SCHEMA, cascade=True))
    await connection.execute(DropSchema(REBUILD_SCHEMA))


async def _live_schema(connection: AsyncConnection) -> str:
    return str((await connection.execute(text("select current_schema()"))).scalar_one())


async def _carry_error_rows(connection: AsyncConnection, live_schema: str) -> None:
    """Give each shadow error row the id and resolved state of the live row from the same
    source position, so that ids an operator holds stay valid; rows the live tables lack
    take ids from the live sequence.  Negative ids in between keep the primary key
    unique at every row of these updates."""
    shadow = _in_schema(error_logs_table, REBUILD_SCHEMA)
    live = _in_schema(error_logs_table, live_schema)
    live_sequence = cast(func.pg_get_serial_sequence(f"{live_schema}.{live.name}", "id"), REGCLASS)
    shadow_sequence = cast(
        func.pg_get_serial_sequence(f"{REBUILD_SCHEMA}.{shadow.name}", "id"), REGCLASS
    )
    same_position = tuple_(
        shadow.c.source_topic, shadow.c.source_partition, shadow.c.source_offset
    ) == tuple_(live.c.source_topic, live.c.source_partition, live.c.source_offset)
    await connection.execute(
        update(shadow)
        .values(id=-live.c.id, resolved=live.c.resolved, resolved_at=live.c.resolved_at)
        .where(same_position)
    )
    await _set_above(connection, live_sequence, live)
    await connection.execute(
        update(shadow).values(id=-func.nextval(live_sequence)).where(shadow.c.id > 0)
    )
    await connection.execute(update(shadow).values(id=-shadow.c.id))
    await _set_above(connection, shadow_sequence, shadow)


async def _carry_reflected_jobs(connection: AsyncConnection, live_schema: str) -> None:
    """Copy into the shadow the pending rows the API wrote for the jobs it just accepted
    (read-your-writes) and the live projector has not folded yet.

    The tail follows the projector's offsets, so it lacks them, and without them a job
    just answered 202 would vanish from reads until the projector folds its request
    after the swap. Its request is in Kafka (the API writes the row only after the
    broker's ack), and folding it onto the copied row changes nothing. Only recent
    rows: an old row that no topic holds any more (retention) is one a rebuild drops.
    """
    shadow = _in_schema(jobs_table, REBUILD_SCHEMA)
    live = _in_schema(jobs_table, live_schema)
    newest = (
        select(live)
        .where(live.c.status == JobStatus.PENDING.value)
        .where(live.c.created_at > func.now() - REFLECTED_ROWS_MAX_AGE)
        .where(~exists().where(shadow.c.id == live.c.id))
    )
    await connection.execute(
        insert(shadow).from_select([column.name for column in live.columns], newest)
    )


async def _set_above(
    connection: AsyncConnection, sequence: ColumnElement[Any], table: Table
) -> None:
    """Move ``sequence`` past both its last value and the highest id of ``table``."""
    highest = select(func.coalesce(func.max(table.c.id), 0)).scalar_subquery()
    last = func.coalesce(func.pg_sequence_last_value(sequence), 0)
    await connection.execute(select(func.setval(sequence, func.greatest(1, highest, last))))


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
