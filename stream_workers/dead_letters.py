"""The dead letter of a record no reader could decode: one builder, one event-id rule.

A poison record is met again and again: Kafka redelivers it after a crash or a
rebalance, and every worker reads every control record. Its dead letter's event id is
therefore derived from where the record sits (topic, partition, offset) and nothing
else, so every copy is the same event; the projector keeps one ``error_logs`` row per
source position, and the job row takes a dead letter's error only while it has none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from schemas.errors import UndecodableEvent
from schemas.events import DeadLetter, SourcePosition, utc_now

_NAMESPACE = uuid.UUID("5f0c7d2e-3a41-4b8e-9c6d-2b7e1f4a9d30")
"""Namespace of the undecodable records' dead-letter ids (fixed: changing it would give
a redelivered record a new id)."""


def dead_letter_event_id(position: SourcePosition) -> str:
    """The event id of the dead letter of the undecodable record at ``position``."""
    name = f"{position.topic}/{position.partition}/{position.offset}"
    return str(uuid.uuid5(_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    key: str
    """The DLQ record's key: the original record's key, else the event id."""
    event: DeadLetter


def undecodable_dead_letter(
    position: SourcePosition,
    raw: bytes,
    key: bytes | None,
    error: UndecodableEvent,
    *,
    names_job: bool,
) -> DeadLetterRecord:
    """The dead letter of the undecodable record ``raw`` read at ``position``.

    ``names_job``: the record's key is the job id and the job cannot run without the
    record (a request). A control record's key names a job too, but an unreadable
    cancel is not that job's error, so its dead letter names no job.
    """
    event_id = dead_letter_event_id(position)
    decoded_key = key.decode("utf-8", "replace") if key else None
    dead = DeadLetter(
        event_id=event_id,
        job_id=decoded_key if names_job else None,
        occurred_at=utc_now(),
        error_type="UndecodableEvent",
        error_message=str(error),
        stack_trace=None,
        retry_count=0,
        source=position,
        original_value=raw,
        request=None,
    )
    return DeadLetterRecord(decoded_key or event_id, dead)
