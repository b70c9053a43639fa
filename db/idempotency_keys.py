"""Keep ``(owner, idempotency_key)`` unique without ever failing a batch.

The API checks the key before it produces a request, but two racing uploads, or an
upstream system producing to Kafka directly, can still give two jobs the same key.  A
unique violation would stop the projector on that batch forever, so the key is settled
instead: the job with the earliest ``(created_at, id)`` keeps it and the others are
written with ``idempotency_key = NULL``.  The rule does not depend on arrival order, so a
replay settles the same way.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import jobs_table
from db.rows import JobRow

KeyPair = tuple[str, str]


def _pair(row: JobRow) -> KeyPair | None:
    if row.owner is None or row.idempotency_key is None:
        return None
    return (row.owner, row.idempotency_key)


async def settle_idempotency_keys(
    connection: AsyncConnection, rows: Sequence[JobRow], loaded: Mapping[uuid.UUID, JobRow]
) -> list[JobRow]:
    """``rows`` (about to be written) with the keys of losing jobs cleared; clears the
    key of any stored job that loses to one of them.  Call with the rows locked."""
    claimed = {
        pair
        for row in rows
        if (pair := _pair(row)) is not None
        and (row.id not in loaded or _pair(loaded[row.id]) != pair)
    }
    if not claimed:
        return list(rows)

    table = jobs_table
    writing = {row.id for row in rows}
    holders = await connection.execute(
        select(table.c.id, table.c.owner, table.c.idempotency_key, table.c.created_at)
        .where(tuple_(table.c.owner, table.c.idempotency_key).in_(sorted(claimed)))
        .order_by(table.c.id)
        .with_for_update()
    )
    contenders: dict[KeyPair, list[tuple[datetime, uuid.UUID]]] = defaultdict(list)
    for job_id, owner, key, created_at in holders:
        if job_id not in writing:
            contenders[(owner, key)].append((created_at, job_id))
    for row in rows:
        pair = _pair(row)
        if pair in claimed and pair is not None:
            contenders[pair].append((row.created_at, row.id))

    winners = {pair: min(candidates)[1] for pair, candidates in contenders.items()}
    stored_losers = sorted(
        job_id
        for pair, candidates in contenders.items()
        for _, job_id in candidates
        if job_id != winners[pair] and job_id not in writing
    )
    if stored_losers:
        await connection.execute(
            update(table).where(table.c.id.in_(stored_losers)).values(idempotency_key=None)
        )
    return [
        dataclasses.replace(row, idempotency_key=None)
        if (pair := _pair(row)) in winners and winners[pair] != row.id
        else row
        for row in rows
    ]
