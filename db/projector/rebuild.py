"""``whisperstream replay --rebuild``: project every topic from the beginning into fresh
tables, then swap them in for the live ones in one transaction.

The fresh tables are the live tables' own metadata created in a separate schema, and
the ordinary batch apply writes to them through ``schema_translate_map``, so rebuild and
live projection share every line of the fold and the store.  Readers see the old rows
until the swap commits and the new ones after it; the swap holds an exclusive lock on
the live tables only for the few ``ALTER TABLE ... SET SCHEMA`` statements.

``error_logs.resolved`` is operator state that no topic holds: it is carried over from
the live rows.  ``api_keys`` is not a projection and is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import MetaData, Table, and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateSchema, DropSchema

from db.models import (
    Base,
    error_logs_table,
    jobs_table,
    projector_lag_table,
    projector_offsets_table,
    results_table,
)
from db.projection_store import apply_batch_in
from db.projector.config import ProjectorConfig
from db.projector.decoding import to_record
from db.projector.reader import EndReader
from schemas.codec import EventCodec

log = logging.getLogger(__name__)

REBUILD_SCHEMA = "projection_rebuild"
RETIRED_SCHEMA = "projection_retired"
PROJECTION_TABLES = (jobs_table, results_table, error_logs_table, projector_offsets_table)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    records: int
    partitions: int
    jobs: int
    errors: int


async def rebuild(
    config: ProjectorConfig,
    engine: AsyncEngine,
    codec: EventCodec,
    *,
    ensure_inactive: Callable[[], None],
) -> RebuildReport:
    """Rebuild the projection of ``config.group_id``'s topics and swap it in.

    ``ensure_inactive`` raises if the projector runs; it is called before reading and
    again right before the swap.
    """
    ensure_inactive()
    async with engine.begin() as connection:
        await _create_shadow(connection)
    reader = EndReader(config)
    records = 0
    async for messages in reader.batches():
        batch = [to_record(message, codec) for message in messages]
        async with engine.begin() as connection:
            shadow = await connection.execution_options(schema_translate_map={None: REBUILD_SCHEMA})
            records += (await apply_batch_in(shadow, config.group_id, batch)).applied
    ensure_inactive()
    async with engine.begin() as connection:
        jobs, errors = await _swap(connection, config.group_id)
    log.info("rebuilt %d records from %d partitions", records, len(reader.partitions))
    return RebuildReport(records, len(reader.partitions), jobs, errors)


async def _create_shadow(connection: AsyncConnection) -> None:
    await connection.execute(DropSchema(REBUILD_SCHEMA, cascade=True, if_exists=True))
    await connection.execute(CreateSchema(REBUILD_SCHEMA))
    shadow = await connection.execution_options(schema_translate_map={None: REBUILD_SCHEMA})
    await shadow.run_sync(
        lambda sync: Base.metadata.create_all(sync, tables=list(PROJECTION_TABLES))
    )


def _in_schema(table: Table, schema: str) -> Table:
    return table.to_metadata(MetaData(), schema=schema)


async def _swap(connection: AsyncConnection, consumer_group: str) -> tuple[int, int]:
    quote = connection.dialect.identifier_preparer.quote
    live_schema = (await connection.execute(text("select current_schema()"))).scalar_one()
    live = ", ".join(quote(table.name) for table in PROJECTION_TABLES)
    await connection.execute(text(f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"))

    shadow_errors = _in_schema(error_logs_table, REBUILD_SCHEMA)
    live_errors = error_logs_table.alias("live_errors")
    await connection.execute(
        update(shadow_errors)
        .values(resolved=live_errors.c.resolved, resolved_at=live_errors.c.resolved_at)
        .where(
            and_(
                shadow_errors.c.source_topic == live_errors.c.source_topic,
                shadow_errors.c.source_partition == live_errors.c.source_partition,
                shadow_errors.c.source_offset == live_errors.c.source_offset,
                live_errors.c.resolved,
            )
        )
    )
    await connection.execute(
        delete(projector_lag_table).where(projector_lag_table.c.consumer_group == consumer_group)
    )

    await connection.execute(DropSchema(RETIRED_SCHEMA, cascade=True, if_exists=True))
    await connection.execute(CreateSchema(RETIRED_SCHEMA))
    for table in PROJECTION_TABLES:
        name = quote(table.name)
        await connection.execute(
            text(f"ALTER TABLE {quote(live_schema)}.{name} SET SCHEMA {RETIRED_SCHEMA}")
        )
        await connection.execute(
            text(f"ALTER TABLE {REBUILD_SCHEMA}.{name} SET SCHEMA {quote(live_schema)}")
        )
    await connection.execute(DropSchema(RETIRED_SCHEMA, cascade=True))
    await connection.execute(DropSchema(REBUILD_SCHEMA))

    jobs = await _count(connection, jobs_table)
    errors = await _count(connection, error_logs_table)
    return jobs, errors


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
