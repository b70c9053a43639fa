"""``GET /transcribe/{job_id}/deliveries``: the webhook attempts of a job (owner or admin)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from notifier.store import DeliveryRow, job_deliveries
from producer_api.appkeys import ENGINE_KEY
from producer_api.openapi import Access, Operation, Param, json_body, problem
from producer_api.problems import not_found
from producer_api.routes_transcribe import find_job, job_id_of
from producer_api.submission import database_unavailable


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def delivery_view(row: DeliveryRow) -> dict[str, Any]:
    return {
        "webhook_id": row.event_id,
        "type": row.event_type,
        "url": row.url,
        "attempt": row.attempt,
        "status": row.status,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "attempted_at": _time(row.attempted_at),
        "next_attempt_at": _time(row.next_attempt_at),
        "created_at": _time(row.created_at),
    }


async def list_deliveries(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    if await find_job(request, job_id) is None:
        raise not_found(f"no job {job_id}")
    try:
        rows = await job_deliveries(request.app[ENGINE_KEY], job_id)
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("webhook deliveries cannot be read") from exc
    return web.json_response(
        {"job_id": str(job_id), "deliveries": [delivery_view(row) for row in rows]}
    )


_NULLABLE = {"type": ["string", "null"]}
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "webhook_id": {
            "type": "string",
            "description": "the webhook-id header: the status event's id",
        },
        "type": {
            "type": "string",
            "enum": ["transcription.completed", "transcription.failed", "transcription.cancelled"],
        },
        "url": {"type": "string"},
        "attempt": {"type": "integer"},
        "status": {
            "type": "string",
            "enum": ["pending", "succeeded", "retrying", "failed", "gone", "skipped"],
        },
        "status_code": {"type": ["integer", "null"]},
        "latency_ms": {"type": ["number", "null"]},
        "error": _NULLABLE,
        "attempted_at": {**_NULLABLE, "format": "date-time"},
        "next_attempt_at": {**_NULLABLE, "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/transcribe/{job_id}/deliveries",
            list_deliveries,
            "The job's webhook delivery attempts, oldest first (one row per attempt)",
            "transcription",
            Access.KEY,
            params=(Param("job_id", "path", {"type": "string", "format": "uuid"}),),
            responses={
                200: json_body(
                    "Attempts",
                    {
                        "type": "object",
                        "properties": {
                            "job_id": {"type": "string"},
                            "deliveries": {"type": "array", "items": DELIVERY_SCHEMA},
                        },
                    },
                ),
                404: problem("No such job (or not yours)"),
            },
        ),
    )
