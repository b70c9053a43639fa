"""The projector's stored positions (``projector_offsets``): read at assignment, reset by
``whisperstream replay``.  Postgres, not Kafka's committed offsets, is the truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import projector_offsets_table

Position = tuple[str, int]


async def load_next_offsets(
    engine: AsyncEngine, consumer_group: str, positions: Iterable[Position]
) -> dict[Position, int]:
    """Stored next offsets of ``positions``; a partition never applied is absent."""
    wanted = sorted(set(positions))
    if not wanted:
        return {}
    table = projector_offsets_table
    stmt = select(table.c.topic, table.c.partition, table.c.next_offset).where(
        table.c.consumer_group == consumer_group,
        tuple_(table.c.topic, table.c.partition).in_(wanted),
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    return {(topic, partition): offset for topic, partition, offset in rows}


async def set_next_offsets(
    engine: AsyncEngine, consumer_group: str, offsets: Mapping[Position, int]
) -> None:
    """Overwrite the stored next offsets (moving back makes the projector fold those
    records again, which the fold turns into no-ops for events it had already seen)."""
    if not offsets:
        return
    table = projector_offsets_table
    stmt = pg_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.consumer_group, table.c.topic, table.c.partition],
        set_={"next_offset": stmt.excluded.next_offset, "updated_at": func.now()},
    )
    params = [
        {
            "consumer_group": consumer_group,
            "topic": topic,
            "partition": partition,
            "next_offset": offset,
            "updated_at": func.now(),
        }
        for (topic, partition), offset in sorted(offsets.items())
    ]
    async with engine.begin() as connection:
        await connection.execute(stmt.values(params))
