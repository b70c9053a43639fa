"""The notifier's Postgres side: scheduling, claiming and recording deliveries.

Why due rows in Postgres rather than a delayed-retry topic: the schedule spans 5 s to
12 h, and one partition of a delay topic would hold a 5 s retry behind a 12 h one (or
need a consumer that pauses and reorders).  A row per attempt with ``next_attempt_at``
is due exactly when it is due, survives any restart, is visible to the API and the CLI
as it is, and replicas share the work with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Integer, Interval, Text, and_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.models import jobs_table, webhook_deliveries_table
from notifier.outcomes import Outcome

PENDING = "pending"
deliveries = webhook_deliveries_table


@dataclass(frozen=True, slots=True)
class JobTarget:
    """What the projection knows of a job's request: whether it has arrived, and where
    and for whom to call back."""

    has_request: bool
    callback_url: str | None
    owner: str | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    job_id: uuid.UUID
    event_id: str
    event_type: str
    url: str
    owner: str | None
    body: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    job_id: uuid.UUID
    event_id: str
    url: str
    host: str
    owner: str | None
    attempt: int
    body: str
    settled: bool
    """Already delivered to this URL, or the job's receiver answered 410: not sent."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one claimed attempt, to be written into its row."""

    delivery: ClaimedDelivery
    outcome: Outcome
    status_code: int | None
    latency_ms: float | None
    error: str | None
    attempted_at: datetime
    next_attempt_at: datetime | None
    """Due time of the next attempt (RETRYING only)."""


def host_of(url: str) -> str:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return f"{(parts.hostname or '').lower()}:{parts.port or default}"


async def job_targets(
    connection: AsyncConnection, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, JobTarget]:
    if not job_ids:
        return {}
    stmt = select(
        jobs_table.c.id, jobs_table.c.has_request, jobs_table.c.callback_url, jobs_table.c.owner
    ).where(jobs_table.c.id.in_(list(set(job_ids))))
    rows = (await connection.execute(stmt)).all()
    return {row.id: JobTarget(row.has_request, row.callback_url, row.owner) for row in rows}


async def schedule(connection: AsyncConnection, new: Sequence[NewDelivery], at: datetime) -> int:
    """Insert the first attempt of each delivery; one already there (the status event
    was redelivered) is left alone.  Returns how many were new."""
    if not new:
        return 0
    rows = [
        {
            "job_id": d.job_id,
            "event_id": d.event_id,
            "event_type": d.event_type,
            "url": d.url,
            "host": host_of(d.url),
            "owner": d.owner,
            "attempt": 1,
            "status": PENDING,
            "body": d.body,
            "next_attempt_at": d.due_at,
            "created_at": at,
        }
        for d in new
    ]
    # one cached statement, executed for many rows (not one VALUES list compiled per call)
    stmt = pg_insert(deliveries).on_conflict_do_nothing().returning(deliveries.c.id)
    return len((await connection.execute(stmt, rows)).all())


# One constant statement (prepared once, whatever the hosts in flight): the oldest due
# rows of hosts with room, a few times what is wanted so that one host's backlog does not
# hide the others, locked against other replicas; ranked per host on top of what is in
# flight to it; the oldest that fit, leased.
_CLAIM = text(
    """
    WITH due AS (
        SELECT id, host, next_attempt_at
        FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
          AND host <> ALL(:full_hosts)
        ORDER BY next_attempt_at
        LIMIT :scan
        FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT due.id, due.next_attempt_at,
               row_number() OVER (PARTITION BY due.host ORDER BY due.next_attempt_at)
                 + coalesce(busy.n, 0) AS slot
        FROM due
        LEFT JOIN unnest(:busy_hosts, :busy_counts) AS busy(host, n) ON busy.host = due.host
    ), chosen AS (
        SELECT id FROM ranked WHERE slot <= :per_host ORDER BY next_attempt_at LIMIT :wanted
    )
    UPDATE webhook_deliveries AS d
    SET locked_until = now() + :lease
    FROM chosen
    WHERE d.id = chosen.id
    RETURNING d.id, d.job_id, d.event_id, d.url, d.host, d.owner, d.attempt, d.body,
        EXISTS (
            SELECT 1 FROM webhook_deliveries AS o
            WHERE o.event_id = d.event_id AND o.url = d.url AND o.status = 'succeeded'
        ) OR EXISTS (
            SELECT 1 FROM webhook_deliveries AS o
            WHERE o.job_id = d.job_id AND o.url = d.url AND o.status = 'gone'
        ) AS settled
    """
).bindparams(
    bindparam("full_hosts", type_=ARRAY(Text)),
    bindparam("busy_hosts", type_=ARRAY(Text)),
    bindparam("busy_counts", type_=ARRAY(Integer)),
    bindparam("lease", type_=Interval),
)


async def claim_due(
    engine: AsyncEngine,
    limit: int,
    lease: timedelta,
    in_flight: Mapping[str, int],
    per_host: int,
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due attempts, oldest first, at most ``per_host`` in flight
    to one host counting ``in_flight``, skipping rows another replica holds.  A lease
    outlives the delivery timeout, so an attempt whose notifier died is claimed again
    once it runs out (at-least-once; never lost).  ``settled``: already delivered to
    this URL, or the job's receiver answered 410."""
    if limit <= 0:
        return []
    busy = {host: n for host, n in in_flight.items() if n > 0}
    params = {
        "full_hosts": [host for host, n in busy.items() if n >= per_host],
        "scan": max(limit * 4, 200),
        "busy_hosts": list(busy),
        "busy_counts": list(busy.values()),
        "per_host": per_host,
        "wanted": limit,
        "lease": lease,
    }
    async with engine.begin() as connection:
        rows = (await connection.execute(_CLAIM, params)).all()
    return [ClaimedDelivery(**row._mapping) for row in rows]


async def record(engine: AsyncEngine, outcomes: Sequence[Recorded]) -> None:
    """Write each attempt's outcome into its row, with the next attempt's row for a
    retry, in one transaction."""
    if not outcomes:
        return
    async with engine.begin() as connection:
        await connection.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("row_id"), deliveries.c.status == PENDING)
            .values(
                status=bindparam("new_status"),
                status_code=bindparam("code"),
                latency_ms=bindparam("latency"),
                error=bindparam("err"),
                attempted_at=bindparam("at"),
                next_attempt_at=bindparam("next_at"),
                locked_until=None,
            )
            .execution_options(synchronize_session=False),
            [
                {
                    "row_id": o.delivery.id,
                    "new_status": o.outcome.value,
                    "code": o.status_code,
                    "latency": o.latency_ms,
                    "err": o.error,
                    "at": o.attempted_at,
                    "next_at": o.next_attempt_at,
                }
                for o in outcomes
            ],
        )
        retries = [o for o in outcomes if o.outcome is Outcome.RETRYING]
        if retries:
            await connection.execute(
                pg_insert(deliveries)
                .from_select(
                    [
                        "job_id",
                        "event_id",
                        "event_type",
                        "url",
                        "host",
                        "owner",
                        "attempt",
                        "status",
                        "body",
                        "next_attempt_at",
                        "created_at",
                    ],
                    select(
                        deliveries.c.job_id,
                        deliveries.c.event_id,
                        deliveries.c.event_type,
                        deliveries.c.url,
                        deliveries.c.host,
                        deliveries.c.owner,
                        deliveries.c.attempt + 1,
                        bindparam("pending", PENDING),
                        deliveries.c.body,
                        deliveries.c.next_attempt_at,
                        deliveries.c.attempted_at,
                    ).where(
                        deliveries.c.id.in_([o.delivery.id for o in retries]),
                        deliveries.c.status == Outcome.RETRYING.value,
                    ),
                )
                .on_conflict_do_nothing()
            )
        gone = [o.delivery for o in outcomes if o.outcome is Outcome.GONE]
        for delivery in gone:
            await connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.job_id == delivery.job_id,
                    deliveries.c.url == delivery.url,
                    deliveries.c.status == PENDING,
                )
                .values(
                    status=Outcome.SKIPPED.value,
                    error="the receiver answered 410 Gone to another attempt",
                    next_attempt_at=None,
                    locked_until=None,
                )
            )


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    job_id: uuid.UUID
    event_id: str
    event_type: str
    url: str
    attempt: int
    status: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    attempted_at: datetime | None


_ROW_COLUMNS = (
    deliveries.c.id,
    deliveries.c.job_id,
    deliveries.c.event_id,
    deliveries.c.event_type,
    deliveries.c.url,
    deliveries.c.attempt,
    deliveries.c.status,
    deliveries.c.status_code,
    deliveries.c.latency_ms,
    deliveries.c.error,
    deliveries.c.next_attempt_at,
    deliveries.c.created_at,
    deliveries.c.attempted_at,
)


async def job_deliveries(engine: AsyncEngine, job_id: uuid.UUID) -> list[DeliveryRow]:
    """Every attempt for one job, oldest first."""
    stmt = select(*_ROW_COLUMNS).where(deliveries.c.job_id == job_id).order_by(deliveries.c.id)
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    return [DeliveryRow(**row._mapping) for row in rows]


async def recent_deliveries(
    engine: AsyncEngine, *, failed_only: bool, limit: int
) -> list[DeliveryRow]:
    """The newest attempts; ``failed_only``: only deliveries given up on (failed, gone)."""
    stmt = select(*_ROW_COLUMNS).order_by(deliveries.c.id.desc()).limit(limit)
    if failed_only:
        stmt = stmt.where(deliveries.c.status.in_([Outcome.FAILED.value, Outcome.GONE.value]))
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    return [DeliveryRow(**row._mapping) for row in rows]


class RedeliverRefusedError(Exception):
    """The job has no delivery to redeliver, or it was delivered already."""


async def redeliver(engine: AsyncEngine, job_id: uuid.UUID, at: datetime) -> int:
    """Schedule one more attempt, due now, of each of the job's deliveries that was
    given up on (failed or gone); one still pending is made due now.  A delivery that
    succeeded is not sent again (never twice).  Returns the attempts made due."""
    async with engine.begin() as connection:
        latest = (
            select(
                deliveries.c.event_id,
                deliveries.c.url,
                func.max(deliveries.c.attempt).label("attempt"),
            )
            .where(deliveries.c.job_id == job_id)
            .group_by(deliveries.c.event_id, deliveries.c.url)
            .subquery()
        )
        rows = (
            await connection.execute(
                select(deliveries).join(
                    latest,
                    and_(
                        deliveries.c.event_id == latest.c.event_id,
                        deliveries.c.url == latest.c.url,
                        deliveries.c.attempt == latest.c.attempt,
                    ),
                )
            )
        ).all()
        if not rows:
            raise RedeliverRefusedError(f"job {job_id} has no webhook deliveries")
        count = 0
        for row in rows:
            if row.status == PENDING:
                await connection.execute(
                    update(deliveries).where(deliveries.c.id == row.id).values(next_attempt_at=at)
                )
                count += 1
            elif row.status in (Outcome.FAILED.value, Outcome.GONE.value, Outcome.SKIPPED.value):
                delivered = await connection.scalar(
                    select(func.count()).where(
                        deliveries.c.event_id == row.event_id,
                        deliveries.c.url == row.url,
                        deliveries.c.status == Outcome.SUCCEEDED.value,
                    )
                )
                if delivered:
                    continue
                # a 410 ends a job's callbacks; an operator's redelivery lifts that
                await connection.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.job_id == job_id,
                        deliveries.c.url == row.url,
                        deliveries.c.status == Outcome.GONE.value,
                    )
                    .values(status=Outcome.FAILED.value)
                )
                await connection.execute(
                    insert(deliveries).values(
                        job_id=row.job_id,
                        event_id=row.event_id,
                        event_type=row.event_type,
                        url=row.url,
                        host=row.host,
                        owner=row.owner,
                        attempt=row.attempt + 1,
                        status=PENDING,
                        body=row.body,
                        next_attempt_at=at,
                        created_at=at,
                    )
                )
                count += 1
        if count == 0:
            raise RedeliverRefusedError(f"job {job_id}'s callbacks were all delivered already")
    return count


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_due: datetime | None


async def backlog(engine: AsyncEngine) -> Backlog:
    stmt = select(func.count(), func.min(deliveries.c.next_attempt_at)).where(
        deliveries.c.status == PENDING
    )
    async with engine.connect() as connection:
        count, oldest = (await connection.execute(stmt)).one()
    return Backlog(int(count), oldest)
