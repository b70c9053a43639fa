"""What the event streams carry: one job event payload, its SSE frame and its cursor.

A cursor is the position in the status topic just after an event, written
``partition:next_offset`` for each partition it covers (``0:17,1:4``). A stream's event
ids are cursors, so a client that reconnects with ``Last-Event-ID`` is served exactly
the events after the last one it saw: none lost, none repeated.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from db.rows import JobRow
from schemas.events import JobStatus, JobStatusChanged

Cursor = dict[int, int]
"""Partition -> the next offset to read."""

_CURSOR_PART = re.compile(r"^(\d{1,6}):(\d{1,19})$")
MAX_CURSOR_PARTS = 4096


class InvalidCursorError(ValueError):
    """A ``Last-Event-ID`` that this API did not write."""


def format_cursor(cursor: Cursor) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))


def parse_cursor(text: str) -> Cursor:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or len(parts) > MAX_CURSOR_PARTS:
        raise InvalidCursorError(f"not an event id of this API: {text[:80]!r}")
    cursor: Cursor = {}
    for part in parts:
        match = _CURSOR_PART.match(part)
        if match is None:
            raise InvalidCursorError(f"not an event id of this API: {text[:80]!r}")
        cursor[int(match[1])] = int(match[2])
    return cursor


@dataclass(frozen=True)
class StatusRecord:
    """A status event as the feed read it: where it sits and what it says."""

    partition: int
    offset: int
    event: JobStatusChanged

    @functools.cached_property
    def sse_body(self) -> bytes:
        """Its ``event:`` and ``data:`` lines, encoded once however many streams send it."""
        name = event_name(self.event.status.value, self.event.progress)
        return _body(name, payload_of_event(self.event))


def event_name(status: str, progress: float) -> str:
    """``progress``: still processing, further along; ``status``: anything else."""
    return "progress" if status == JobStatus.PROCESSING.value and progress > 0 else "status"


def payload_of_event(event: JobStatusChanged) -> dict[str, Any]:
    result = None
    if event.result is not None:
        r = event.result
        result = {
            "text": r.text,
            "language": r.language,
            "duration": r.duration_s,
            "word_count": r.word_count,
            "confidence": r.confidence,
            "segment_count": r.segment_count,
        }
    error = None
    if event.error is not None:
        error = {"type": event.error.type, "message": event.error.message}
    return {
        "job_id": event.job_id,
        "status": event.status.value,
        "progress": event.progress,
        "attempt": event.attempt,
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(),
        "worker_id": event.worker_id,
        "engine": event.engine,
        "model": event.model,
        "error": error,
        "result": result,
    }


def payload_of_row(row: JobRow) -> dict[str, Any]:
    """The same payload from the job's row in Postgres (a stream's first event)."""
    result = None
    if row.result is not None:
        r = row.result
        result = {
            "text": r.transcription_text,
            "language": r.language,
            "duration": r.duration,
            "word_count": r.word_count,
            "confidence": r.confidence,
            "segment_count": r.segment_count,
        }
    error = None
    if row.error_type is not None or row.error_message is not None:
        error = {"type": row.error_type, "message": row.error_message}
    moment = row.updated_at or row.created_at
    return {
        "job_id": str(row.id),
        "status": row.status,
        "progress": row.progress,
        "attempt": max(1, row.attempts),
        "seq": None,
        "occurred_at": moment.isoformat() if moment is not None else None,
        "worker_id": None,
        "engine": row.engine,
        "model": row.model_used or row.model_size,
        "error": error,
        "result": result,
    }


def is_terminal(payload: dict[str, Any]) -> bool:
    return payload["status"] in {s.value for s in JobStatus if s.is_terminal}


def _body(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def sse_frame(name: str, payload: dict[str, Any], event_id: str) -> bytes:
    return record_frame(_body(name, payload), event_id)


def record_frame(body: bytes, event_id: str) -> bytes:
    return f"id: {event_id}\n".encode() + body


KEEPALIVE_FRAME = b": keep-alive\n\n"

EVENT_PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The `data:` of every event (`state`, `status`, `progress`), JSON on one line. "
        "`state` is the job as the API knows it when the stream opens (`seq` null); "
        "`status` is a new status; `progress` is a processing job further along. Each "
        "event's `id:` is a cursor; send it back as `Last-Event-ID` to resume."
    ),
    "required": ["job_id", "status", "progress", "attempt", "occurred_at"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "attempt": {"type": "integer", "minimum": 1},
        "seq": {"type": ["integer", "null"], "description": "the worker's event counter"},
        "occurred_at": {"type": ["string", "null"], "format": "date-time"},
        "worker_id": {"type": ["string", "null"]},
        "engine": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]},
        "error": {
            "type": ["object", "null"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "result": {
            "type": ["object", "null"],
            "description": "set on completed",
            "properties": {
                "text": {"type": "string"},
                "language": {"type": "string"},
                "duration": {"type": "number"},
                "word_count": {"type": "integer"},
                "confidence": {"type": ["number", "null"]},
                "segment_count": {"type": "integer"},
            },
        },
    },
}
