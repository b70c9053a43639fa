"""What the projector hands to the store: one Kafka record, decoded or not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events import Event


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record value the codec could not decode (kept for ``error_logs``)."""

    raw: bytes | None
    error_type: str
    error_message: str


@dataclass(frozen=True, slots=True)
class ProjectionRecord:
    topic: str
    partition: int
    offset: int
    timestamp: datetime
    """The Kafka record timestamp; used for rows the projector writes about the record."""
    key: bytes | None
    payload: Event | Undecodable


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    applied: int
    """Records at or above their partition's stored next offset, folded in."""
    skipped: int
    """Records below it: already applied by an earlier transaction."""
    jobs_written: int
    errors_written: int
