"""JSON views of jobs, and the schemas that document them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from db.rows import JobRow


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def job_links(job_id: str) -> dict[str, str]:
    return {
        "self": f"/transcribe/{job_id}",
        "result": f"/transcribe/{job_id}?format=json",
        "cancel": f"/transcribe/{job_id}",
    }


def accepted_view(job_id: str, status: str = "pending") -> dict[str, Any]:
    return {"job_id": job_id, "status": status, "links": job_links(job_id)}


def job_view(row: JobRow) -> dict[str, Any]:
    job_id = str(row.id)
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
            "engine": r.engine,
            "model_used": r.model_used,
            "processing_ms": r.processing_ms,
            "real_time_factor": r.real_time_factor,
        }
    error = None
    if row.error_type is not None or row.error_message is not None:
        error = {"type": row.error_type, "message": row.error_message}
    return {
        "job_id": job_id,
        "status": row.status,
        "progress": row.progress,
        "priority": row.priority,
        "model": row.model_size,
        "model_used": row.model_used,
        "engine": row.engine,
        "language": row.language,
        "task": row.task,
        "original_filename": row.original_filename,
        "content_type": row.content_type,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "audio_uri": row.audio_uri,
        "callback_url": row.callback_url,
        "attempts": row.attempts,
        "error": error,
        "cancel_requested_at": _time(row.cancel_requested_at),
        "created_at": _time(row.created_at),
        "started_at": _time(row.started_at),
        "completed_at": _time(row.completed_at),
        "updated_at": _time(row.updated_at),
        "result": result,
        "links": job_links(job_id),
    }


_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

LINKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {k: {"type": "string"} for k in ("self", "result", "cancel")},
}
ACCEPTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["job_id", "status", "links"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string"},
        "links": LINKS_SCHEMA,
    },
}
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["job_id", "status", "progress", "created_at", "links"],
    "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "status": {
            "type": "string",
            "enum": ["pending", "processing", "retrying", "completed", "failed", "cancelled"],
        },
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        **dict.fromkeys(
            (
                "priority",
                "model",
                "model_used",
                "engine",
                "language",
                "task",
                "original_filename",
                "content_type",
                "sha256",
                "audio_uri",
                "callback_url",
            ),
            _NULLABLE_STRING,
        ),
        "size_bytes": {"type": ["integer", "null"]},
        "attempts": {"type": "integer"},
        "error": {"type": ["object", "null"]},
        **dict.fromkeys(
            ("cancel_requested_at", "created_at", "started_at", "completed_at", "updated_at"), _TIME
        ),
        "result": {
            "type": ["object", "null"],
            "properties": {
                "text": _NULLABLE_STRING,
                "language": _NULLABLE_STRING,
                "duration": {"type": ["number", "null"]},
                "word_count": {"type": ["integer", "null"]},
                "confidence": {"type": ["number", "null"]},
            },
        },
        "links": LINKS_SCHEMA,
    },
}
