"""`GET /jobs`: the caller's jobs, newest first, with filters and a cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from db.errors import InvalidCursorError
from db.job_queries import JobFilters, list_jobs
from producer_api.appkeys import ENGINE_KEY
from producer_api.middlewares import principal_of
from producer_api.openapi import Access, Operation, Param, json_body, problem
from producer_api.problems import ProblemError, validation_error
from producer_api.submission import database_unavailable
from producer_api.views import JOB_SCHEMA, job_view
from schemas.events import JobStatus, Priority

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
_FILTERS = frozenset(
    {"status", "priority", "model", "owner", "created_after", "created_before", "cursor", "limit"}
)


def _choice(request: web.Request, name: str, allowed: list[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise validation_error(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _moment(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise validation_error(name, f"must be an ISO 8601 date-time, got {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _limit(request: web.Request) -> int:
    value = request.query.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise validation_error("limit", f"must be an integer, got {value!r}") from None
    if limit < 1:
        raise validation_error("limit", "must be at least 1")
    return min(limit, MAX_LIMIT)


async def list_my_jobs(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - _FILTERS)
    if unknown:
        raise validation_error(unknown[0], "unknown query parameter")
    model = request.query.get("model")
    principal = principal_of(request)
    owner: str | None = principal.owner
    if principal.is_admin:  # admins see every owner's jobs, or one owner's with ?owner=
        owner = request.query.get("owner")
    elif "owner" in request.query:
        raise validation_error("owner", "only admin keys may filter by owner")
    filters = JobFilters(
        owner=owner,
        status=_choice(request, "status", [s.value for s in JobStatus]),
        priority=_choice(request, "priority", [p.value for p in Priority]),
        model_size=model,
        created_after=_moment(request, "created_after"),
        created_before=_moment(request, "created_before"),
    )
    limit = _limit(request)
    try:
        page = await list_jobs(request.app[ENGINE_KEY], filters, request.query.get("cursor"), limit)
    except InvalidCursorError as exc:
        raise ProblemError(400, "Bad Request", f"cursor: {exc}", slug="validation") from exc
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("jobs cannot be listed") from exc
    return web.json_response(
        {
            "items": [job_view(row) for row in page.items],
            "next_cursor": page.next_cursor,
            "limit": limit,
        }
    )


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/jobs",
            list_my_jobs,
            "The caller's jobs, newest first",
            "transcription",
            Access.KEY,
            params=(
                Param("status", "query", {"type": "string", "enum": [s.value for s in JobStatus]}),
                Param("priority", "query", {"type": "string", "enum": [p.value for p in Priority]}),
                Param("model", "query", {"type": "string"}),
                Param("owner", "query", {"type": "string"}, "admin keys only: one owner's jobs"),
                Param("created_after", "query", {"type": "string", "format": "date-time"}),
                Param("created_before", "query", {"type": "string", "format": "date-time"}),
                Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
                Param(
                    "limit",
                    "query",
                    {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
                    f"page size, capped at {MAX_LIMIT}",
                ),
            ),
            responses={
                200: json_body(
                    "A page of jobs",
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": JOB_SCHEMA},
                            "next_cursor": {"type": ["string", "null"]},
                            "limit": {"type": "integer"},
                        },
                    },
                ),
                400: problem("Invalid cursor"),
                422: problem("Invalid filter"),
            },
        ),
    )
