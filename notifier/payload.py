"""The JSON body of a callback, built once from the terminal status event.

The body is frozen into the delivery row, so every retry sends the same bytes under
the same ``webhook-id``.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.events import JobStatus, JobStatusChanged

EVENT_TYPES = {
    JobStatus.COMPLETED: "transcription.completed",
    JobStatus.FAILED: "transcription.failed",
    JobStatus.CANCELLED: "transcription.cancelled",
}


def is_notified(event: JobStatusChanged) -> bool:
    return event.status in EVENT_TYPES


def callback_body(event: JobStatusChanged, api_base_url: str) -> str:
    """The callback of a terminal status event, as compact JSON text."""
    base = api_base_url.rstrip("/")
    job = f"{base}/transcribe/{event.job_id}"
    body: dict[str, Any] = {
        "type": EVENT_TYPES[event.status],
        "job_id": event.job_id,
        "status": event.status.value,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "result": None,
        "error": None,
        "links": {"job": job, "result": f"{job}?format=json"},
    }
    if event.result is not None:
        body["result"] = {
            "text": event.result.text,
            "language": event.result.language,
            "duration_s": event.result.duration_s,
            "word_count": event.result.word_count,
            "segment_count": event.result.segment_count,
            "model": event.model,
            "engine": event.engine,
        }
    if event.error is not None:
        body["error"] = {"type": event.error.type, "message": event.error.message}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
