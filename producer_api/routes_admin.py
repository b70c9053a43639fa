"""Administration: dependency health, worker heartbeats, the error log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from db import error_queries
from db.api_support import projector_last_applied_at
from db.error_queries import ErrorLogEntry, get_error, resolve_error
from db.lag_queries import lag_report, read_projector_lag
from notifier.store import backlog
from ops.kafka.dlq import redrive
from producer_api.appkeys import ENGINE_KEY, HEARTBEATS_KEY, PRODUCER_KEY, SETTINGS_KEY, STORE_KEY
from producer_api.openapi import Access, Operation, Param, json_body, problem
from producer_api.problems import ProblemError, not_found, validation_error
from producer_api.submission import database_unavailable, kafka_unavailable
from schemas.events import WorkerHeartbeat, utc_now
from whisperstream.errors import WhisperstreamError
from whisperstream.kafka_producer import PublishError
from whisperstream.supervisor.state import read_state

CHECK_TIMEOUT_S = 3.0
MAX_LIMIT = 100


async def _timed(check: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    started = time.perf_counter()
    detail: str | None
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        status, detail = "error", f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except (WhisperstreamError, OSError, SQLAlchemyError, RuntimeError, ValueError) as exc:
        status, detail = "error", str(exc)
    else:
        status, detail = "ok", None
    result: dict[str, Any] = {
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if detail is not None:
        result["detail"] = detail
    return result


def _worker(beat: WorkerHeartbeat) -> dict[str, Any]:
    pool = beat.pool
    lookups = pool.hits + pool.misses
    return {
        "worker_id": beat.worker_id,
        "host": beat.host,
        "pid": beat.pid,
        "last_seen": beat.occurred_at.isoformat(),
        "engines": beat.engines,
        "in_flight": beat.in_flight,
        "concurrency": beat.concurrency,
        "processed": beat.processed,
        "failed": beat.failed,
        "model_pool": {
            "hits": pool.hits,
            "misses": pool.misses,
            "hit_rate": round(pool.hits / lookups, 4) if lookups else None,
            "evictions": pool.evictions,
            "oom_fallbacks": pool.oom_fallbacks,
            "loads": pool.loads,
            "load_seconds": pool.load_seconds,
            "loaded_models": beat.loaded_models,
        },
    }


async def admin_health(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS_KEY]
    engine = app[ENGINE_KEY]

    async def postgres() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("select 1"))

    async def kafka() -> None:
        await app[PRODUCER_KEY].ping(CHECK_TIMEOUT_S)

    async def s3() -> None:
        if not await asyncio.to_thread(app[STORE_KEY].bucket_exists, settings.audio_bucket):
            raise RuntimeError(f"bucket {settings.audio_bucket!r} is missing")

    kafka_check, s3_check, pg_check = await asyncio.gather(
        _timed(kafka), _timed(s3), _timed(postgres)
    )
    projector: dict[str, Any] = {"last_applied_at": None, "lag": None}
    try:
        last = await asyncio.wait_for(projector_last_applied_at(engine), CHECK_TIMEOUT_S)
        projector["last_applied_at"] = last.isoformat() if last is not None else None
        # the projector records its lag per partition, from fetch high watermarks
        lag_rows = await asyncio.wait_for(
            read_projector_lag(engine, settings.projector_group_id), CHECK_TIMEOUT_S
        )
        projector["lag"] = lag_report(lag_rows)
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        projector["error"] = str(exc) or type(exc).__name__

    notifier = await _notifier_report(engine, settings.notifier_group_id)
    beats = app[HEARTBEATS_KEY].snapshot(utc_now())
    dependencies = {"kafka": kafka_check, "s3": s3_check, "postgres": pg_check}
    healthy = all(check["status"] == "ok" for check in dependencies.values())
    report: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "dependencies": dependencies,
        "projector": projector,
        "notifier": notifier,
        "workers": {
            "live": [_worker(b) for b in beats.live],
            "stale": [_worker(b) for b in beats.stale],
            "reading": beats.reading,
            "undecodable_heartbeats": beats.undecodable,
            "detail": beats.error,
        },
    }
    # only under `whisperstream up`, which restarts the services that exit
    if settings.whisperstream_supervisor_state is not None:
        state = await asyncio.to_thread(read_state, settings.whisperstream_supervisor_state)
        report["supervisor"] = state or {"error": "the supervisor's state file is unreadable"}
    return web.json_response(report)


async def _notifier_report(engine: AsyncEngine, group_id: str) -> dict[str, Any]:
    """The notifier's lag on the status topic (it writes it as the projector does) and
    its webhook backlog: attempts pending, and when the oldest was due."""
    report: dict[str, Any] = {"lag": None, "pending_deliveries": None, "oldest_due": None}
    try:
        rows = await asyncio.wait_for(read_projector_lag(engine, group_id), CHECK_TIMEOUT_S)
        report["lag"] = lag_report(rows)
        pending = await asyncio.wait_for(backlog(engine), CHECK_TIMEOUT_S)
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        report["error"] = str(exc) or type(exc).__name__
        return report
    report["pending_deliveries"] = pending.pending
    report["oldest_due"] = pending.oldest_due.isoformat() if pending.oldest_due else None
    return report


def _error_view(entry: ErrorLogEntry) -> dict[str, Any]:
    row = entry.row
    return {
        "id": entry.id,
        "job_id": str(row.job_id) if row.job_id is not None else None,
        "error_type": row.error_type,
        "error_message": row.error_message,
        "stack_trace": row.stack_trace,
        "retry_count": row.retry_count,
        "resolved": entry.resolved,
        "resolved_at": entry.resolved_at.isoformat() if entry.resolved_at else None,
        "source": {
            "topic": row.source_topic,
            "partition": row.source_partition,
            "offset": row.source_offset,
        },
        "created_at": row.created_at.isoformat(),
    }


MAX_BIGINT = 2**63 - 1
"""Ids and cursors are Postgres bigints: a larger number would fail the query."""


def _int(request: web.Request, name: str, default: int | None, low: int) -> int | None:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise validation_error(name, f"must be an integer, got {value!r}") from None
    if number < low:
        raise validation_error(name, f"must be at least {low}")
    if number > MAX_BIGINT:
        raise validation_error(name, f"must be at most {MAX_BIGINT}")
    return number


async def list_errors(request: web.Request) -> web.Response:
    resolved_text = request.query.get("resolved")
    resolved: bool | None = None
    if resolved_text is not None:
        if resolved_text not in ("true", "false"):
            raise validation_error("resolved", f"must be true or false, got {resolved_text!r}")
        resolved = resolved_text == "true"
    limit = min(_int(request, "limit", 50, 1) or 50, MAX_LIMIT)
    try:
        page = await error_queries.list_errors(
            request.app[ENGINE_KEY],
            resolved=resolved,
            error_type=request.query.get("error_type"),
            before_id=_int(request, "before_id", None, 1),
            limit=limit,
        )
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("the error log cannot be read") from exc
    return web.json_response(
        {
            "items": [_error_view(e) for e in page.items],
            "next_before_id": page.next_before_id,
            "limit": limit,
        }
    )


async def resolve_error_entry(request: web.Request) -> web.Response:
    error_id = _error_id(request)
    try:
        found = await resolve_error(request.app[ENGINE_KEY], error_id, at=utc_now())
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("the error log cannot be updated") from exc
    if not found:
        raise not_found(f"no error {error_id}")
    return web.json_response({"id": error_id, "resolved": True})


def _error_id(request: web.Request) -> int:
    text_id = request.match_info["error_id"]
    # isdigit() alone takes "²" (int() refuses it) and numbers past Postgres' bigint
    if not (text_id.isascii() and text_id.isdigit()) or int(text_id) > MAX_BIGINT:
        raise not_found(f"no error {text_id!r}")
    return int(text_id)


async def redrive_error_entry(request: web.Request) -> web.Response:
    """Publish the dead letter's request again as a new job (ops/kafka/dlq.py), as
    `whisperstream dlq redrive` does, and mark the error resolved."""
    error_id = _error_id(request)
    engine = request.app[ENGINE_KEY]
    try:
        entry = await get_error(engine, error_id)
        if entry is None:
            raise not_found(f"no error {error_id}")
        (outcome,) = await redrive(request.app[SETTINGS_KEY], engine, [entry], dry_run=False)
    except PublishError as exc:
        raise kafka_unavailable(exc) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("the error log cannot be updated") from exc
    if outcome.new_job_id is None:
        raise ProblemError(409, "Conflict", outcome.outcome, slug="not-redrivable")
    return web.json_response(
        {
            "id": error_id,
            "failed_job_id": outcome.failed_job_id,
            "new_job_id": outcome.new_job_id,
            "outcome": outcome.outcome,
        }
    )


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "job_id": {"type": ["string", "null"]},
        "error_type": {"type": "string"},
        "error_message": {"type": "string"},
        "resolved": {"type": "boolean"},
    },
}


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/admin/health",
            admin_health,
            "Kafka, S3 and Postgres checks with latency; projector; notifier lag and webhook "
            "backlog; worker heartbeats; "
            "under `whisperstream up`, restarts per service",
            "admin",
            Access.ADMIN,
            responses={200: json_body("Health report", {"type": "object"})},
        ),
        Operation(
            "GET",
            "/admin/errors",
            list_errors,
            "The error log (DLQ mirror), newest first",
            "admin",
            Access.ADMIN,
            params=(
                Param("resolved", "query", {"type": "boolean"}),
                Param("error_type", "query", {"type": "string"}),
                Param("before_id", "query", {"type": "integer"}, "next_before_id of a page"),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
            ),
            responses={
                200: json_body(
                    "A page of errors",
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _ERROR_SCHEMA},
                            "next_before_id": {"type": ["integer", "null"]},
                        },
                    },
                ),
                422: problem("Invalid filter"),
            },
        ),
        Operation(
            "POST",
            "/admin/errors/{error_id}/resolve",
            resolve_error_entry,
            "Mark an error resolved",
            "admin",
            Access.ADMIN,
            params=(Param("error_id", "path", {"type": "integer"}),),
            responses={
                200: json_body("Resolved", {"type": "object"}),
                404: problem("No such error"),
            },
        ),
        Operation(
            "POST",
            "/admin/errors/{error_id}/redrive",
            redrive_error_entry,
            "Publish a dead letter's request again as a new job and mark the error resolved",
            "admin",
            Access.ADMIN,
            params=(Param("error_id", "path", {"type": "integer"}),),
            responses={
                200: json_body(
                    "Redriven (or already redriven): the new job's id", {"type": "object"}
                ),
                404: problem("No such error"),
                409: problem("The dead letter holds no request to publish again"),
                503: problem("Kafka or Postgres unavailable"),
            },
        ),
    )
