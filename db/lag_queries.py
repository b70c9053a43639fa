"""Reading the projector's lag (for the API's ``/admin/health``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import projector_lag_table


@dataclass(frozen=True, slots=True)
class PartitionLagRow:
    topic: str
    partition: int
    next_offset: int
    high_watermark: int
    lag: int
    updated_at: datetime


async def read_projector_lag(engine: AsyncEngine, consumer_group: str) -> list[PartitionLagRow]:
    """The lag the projector of ``consumer_group`` wrote with its latest batches."""
    table = projector_lag_table
    stmt = (
        select(
            table.c.topic,
            table.c.partition,
            table.c.next_offset,
            table.c.high_watermark,
            table.c.lag,
            table.c.updated_at,
        )
        .where(table.c.consumer_group == consumer_group)
        .order_by(table.c.topic, table.c.partition)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    return [PartitionLagRow(*row) for row in rows]


def lag_report(rows: list[PartitionLagRow]) -> dict[str, Any]:
    """A JSON-ready summary: total lag, the oldest update, and each partition.

    The total is None (unknown) while no partition has been measured: the projector
    writes a row only once a fetch response gave the partition's high watermark.
    """
    oldest = min((row.updated_at for row in rows), default=None)
    return {
        "total_lag": sum(row.lag for row in rows) if rows else None,
        "oldest_update": oldest.isoformat() if oldest is not None else None,
        "partitions": [
            {
                "topic": row.topic,
                "partition": row.partition,
                "next_offset": row.next_offset,
                "high_watermark": row.high_watermark,
                "lag": row.lag,
                "updated_at": row.updated_at.isoformat(),
            }
            for row in rows
        ],
    }
