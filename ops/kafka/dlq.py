"""Dead letters: list, show, and redrive the original requests as new jobs.

A redrive publishes the original request again as a *new* job: a fresh job id (derived
from the error row, so a repeated redrive finds the job it already made), attempt 1,
source `redrive`, and `correlation_id` set to the failed job's id. The failed job stays
failed (terminal states never change); its `error_logs` row is marked resolved.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from db.error_queries import ErrorLogEntry, list_errors, resolve_error
from db.job_queries import get_job
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import Source, TranscriptionRequested, utc_now
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.settings import Settings

REDRIVE_NAMESPACE = uuid.UUID("0d7a3f2e-41c2-4d8e-9a4b-6f8e2c1b7d90")
PAGE = 500


@dataclass(frozen=True)
class RedriveOutcome:
    error_id: int
    failed_job_id: str | None
    new_job_id: str | None
    outcome: str
    """redriven | would redrive | already redriven | not redrivable: <why>"""


async def unresolved_errors(
    engine: AsyncEngine, *, error_type: str | None, since: datetime | None
) -> list[ErrorLogEntry]:
    entries: list[ErrorLogEntry] = []
    before: int | None = None
    while True:
        page = await list_errors(
            engine,
            resolved=False,
            error_type=error_type,
            created_after=since,
            before_id=before,
            limit=PAGE,
        )
        entries.extend(page.items)
        if page.next_before_id is None:
            return entries
        before = page.next_before_id


def redriven_request(entry: ErrorLogEntry, codec: EventCodec) -> TranscriptionRequested:
    """The request to publish again; UndecodableEvent if the entry holds none."""
    original = codec.decode(entry.row.raw_payload or b"", TranscriptionRequested)
    new_job_id = str(uuid.uuid5(REDRIVE_NAMESPACE, f"error-log:{entry.id}:{original.job_id}"))
    return dataclasses.replace(
        original,
        event_id=str(uuid.uuid5(REDRIVE_NAMESPACE, f"request:{new_job_id}")),
        job_id=new_job_id,
        occurred_at=utc_now(),
        attempt=1,
        not_before=None,
        source=Source.REDRIVE,
        correlation_id=original.job_id,
        # the failed job keeps its idempotency key; a second owner of it would clash
        idempotency_key=None,
    )


async def redrive(
    settings: Settings, engine: AsyncEngine, entries: list[ErrorLogEntry], *, dry_run: bool
) -> list[RedriveOutcome]:
    outcomes: list[RedriveOutcome] = []
    with EventCodec(settings.schema_registry_url) as codec:
        planned: list[tuple[ErrorLogEntry, TranscriptionRequested]] = []
        for entry in entries:
            failed = str(entry.row.job_id) if entry.row.job_id else None
            try:
                planned.append((entry, redriven_request(entry, codec)))
            except UndecodableEvent as exc:
                why = f"not redrivable: the dead letter holds no request ({exc.reason})"
                outcomes.append(RedriveOutcome(entry.id, failed, None, why))
        if dry_run:
            outcomes += [
                RedriveOutcome(e.id, r.correlation_id, r.job_id, "would redrive")
                for e, r in planned
            ]
            return outcomes
        async with KafkaProducer.from_settings(settings) as producer:
            for entry, request in planned:
                known = await get_job(engine, uuid.UUID(request.job_id), owner=None)
                if known is None:
                    topic = settings.topic_for_priority(request.priority)
                    await producer.send(topic, request.job_id, codec.encode(request))
                # resolved only after Kafka confirmed the new request
                await resolve_error(engine, entry.id, at=utc_now())
                outcome = "already redriven" if known is not None else "redriven"
                outcomes.append(
                    RedriveOutcome(entry.id, request.correlation_id, request.job_id, outcome)
                )
    return outcomes
