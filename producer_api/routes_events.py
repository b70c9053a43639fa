"""Server-Sent Events: `/transcribe/{id}/events` (one job) and `/jobs/events` (many).

A stream opens with the current state, then sends every status and progress event
the process's status feed reads, and a comment every ``API_EVENTS_KEEPALIVE_S``. A
job's stream ends after its terminal event. Each event's ``id:`` is a cursor
(producer_api/job_events.py): a client that reconnects with ``Last-Event-ID`` (or
``?last_event_id=``, for clients that cannot set headers) gets exactly the events after
it; a job stream resumed after its terminal event answers 204, which tells an
EventSource to stop reconnecting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from db.job_queries import JobFilters, list_jobs
from producer_api.appkeys import ENGINE_KEY, SETTINGS_KEY
from producer_api.job_events import (
    EVENT_PAYLOAD_SCHEMA,
    KEEPALIVE_FRAME,
    Cursor,
    InvalidCursorError,
    StatusRecord,
    format_cursor,
    is_terminal,
    parse_cursor,
    payload_of_event,
    payload_of_row,
    record_frame,
    sse_frame,
)
from producer_api.middlewares import principal_of
from producer_api.openapi import Access, Operation, Param, problem
from producer_api.problems import ProblemError, validation_error
from producer_api.routes_transcribe import find_job, job_id_of
from producer_api.status_feed import StatusFeed, Subscription, SubscriptionEndedError
from producer_api.submission import database_unavailable
from schemas.events import JobStatus

FEED_KEY = web.AppKey("status_feed", StatusFeed)

READY_TIMEOUT_S = 10.0
SNAPSHOT_LIMIT = 100
_UNFINISHED = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING)
_LAST_EVENT_ID = "Last-Event-ID"


def _since(request: web.Request) -> Cursor | None:
    text = request.headers.get(_LAST_EVENT_ID) or request.query.get("last_event_id")
    if text is None or not text.strip():
        return None
    try:
        return parse_cursor(text)
    except InvalidCursorError as exc:
        raise validation_error(_LAST_EVENT_ID, str(exc)) from None


async def _feed(request: web.Request) -> StatusFeed:
    feed = request.app[FEED_KEY]
    if not await feed.wait_ready(READY_TIMEOUT_S):
        raise ProblemError(
            503,
            "Service Unavailable",
            feed.error or "the status topic is not being read yet",
            slug="events-unavailable",
            headers={"Retry-After": "5"},
        )
    return feed


class _Stream:
    """One open text/event-stream response and the cursor of what it has sent."""

    def __init__(self, request: web.Request, cursor: Cursor) -> None:
        self.request = request
        self.cursor = cursor
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )

    async def open(self) -> None:
        await self.response.prepare(self.request)
        await self.response.write(b"retry: 2000\n\n")

    async def send_state(self, payload: dict[str, Any]) -> None:
        await self.response.write(sse_frame("state", payload, format_cursor(self.cursor)))

    async def send(self, record: StatusRecord, *, one_partition: bool = False) -> None:
        if one_partition:  # one job's events all sit in its partition
            self.cursor = {record.partition: record.offset + 1}
        else:
            self.cursor[record.partition] = record.offset + 1
        await self.response.write(record_frame(record.sse_body, format_cursor(self.cursor)))

    async def keepalive(self) -> None:
        await self.response.write(KEEPALIVE_FRAME)


async def _follow(
    stream: _Stream, subscription: Subscription, keepalive_s: float, *, one_job: bool
) -> None:
    """Send live records until the job ends (one job), the feed ends it, or the client
    goes away."""
    while True:
        try:
            record = await subscription.next(keepalive_s)
        except SubscriptionEndedError:
            return
        if record is None:
            await stream.keepalive()
            continue
        await stream.send(record, one_partition=one_job)
        if one_job and record.event.status.is_terminal:
            return


async def job_events(request: web.Request) -> web.StreamResponse:
    job_id = job_id_of(request)
    since = _since(request)
    row = await find_job(request, job_id)
    if row is None:
        raise ProblemError(404, "Not Found", f"no job {job_id}", slug="not-found")
    feed = await _feed(request)
    keepalive_s = request.app[SETTINGS_KEY].api_events_keepalive_s
    subscription = feed.subscribe_job(str(job_id), since)
    try:
        latest = feed.latest(str(job_id))
        if since is None:
            # The newest of what Postgres and the feed know; a terminal row is final.
            if latest is None or row.status in {s.value for s in JobStatus if s.is_terminal}:
                state = payload_of_row(row)
                cursor = dict(subscription.start)
            else:
                state = payload_of_event(latest.event)
                cursor = {latest.partition: subscription.start[latest.partition]}
            stream = _Stream(request, cursor)
            with contextlib.suppress(ConnectionError):
                await stream.open()
                await stream.send_state(state)
                if not is_terminal(state):
                    await _follow(stream, subscription, keepalive_s, one_job=True)
            return stream.response
        backlog = [
            r for r in await feed.replay(since, subscription.start) if r.event.job_id == str(job_id)
        ]
        ended = row.status in {s.value for s in JobStatus if s.is_terminal} or (
            latest is not None and latest.event.status.is_terminal
        )
        if not backlog and ended:
            return web.Response(status=204)
        stream = _Stream(request, dict(since))
        with contextlib.suppress(ConnectionError):
            await stream.open()
            for record in backlog:
                await stream.send(record, one_partition=True)
                if record.event.status.is_terminal:
                    return stream.response
            await _follow(stream, subscription, keepalive_s, one_job=True)
        return stream.response
    finally:
        subscription.close()


def _owner_filter(request: web.Request) -> str | None:
    principal = principal_of(request)
    if principal.is_admin:  # every job, or one owner's with ?owner=
        return request.query.get("owner") or None
    if "owner" in request.query:
        raise validation_error("owner", "only admin keys may filter by owner")
    return principal.owner


async def _unfinished_jobs(request: web.Request, owner: str | None) -> list[dict[str, Any]]:
    engine = request.app[ENGINE_KEY]
    states: list[dict[str, Any]] = []
    try:
        for status in _UNFINISHED:
            filters = JobFilters(owner=owner, status=status.value)
            page = await list_jobs(engine, filters, None, SNAPSHOT_LIMIT)
            states.extend(payload_of_row(row) for row in page.items)
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("jobs cannot be listed") from exc
    return states


async def _owned(
    feed: StatusFeed, records: Iterable[StatusRecord], owner: str | None
) -> list[StatusRecord]:
    records = list(records)
    if owner is None:
        return records
    owners = await feed.owners_of([r.event.job_id for r in records])
    return [r for r in records if owners.get(r.event.job_id) == owner]


async def jobs_events(request: web.Request) -> web.StreamResponse:
    unknown = sorted(set(request.query) - {"owner", "last_event_id"})
    if unknown:
        raise validation_error(unknown[0], "unknown query parameter")
    owner = _owner_filter(request)
    since = _since(request)
    states = await _unfinished_jobs(request, owner) if since is None else []
    feed = await _feed(request)
    keepalive_s = request.app[SETTINGS_KEY].api_events_keepalive_s
    subscription = feed.subscribe_jobs(owner, since)
    try:
        backlog: list[StatusRecord] = []
        if since is not None:
            backlog = await _owned(feed, await feed.replay(since, subscription.start), owner)
        stream = _Stream(request, {**subscription.start, **(since or {})})
        with contextlib.suppress(ConnectionError):
            await stream.open()
            for state in states:
                await stream.send_state(state)
            for record in backlog:
                await stream.send(record)
            await _follow(stream, subscription, keepalive_s, one_job=False)
        return stream.response
    finally:
        subscription.close()


_JOB_ID = Param("job_id", "path", {"type": "string", "format": "uuid"})
_RESUME = (
    Param(
        _LAST_EVENT_ID,
        "header",
        {"type": "string", "example": "0:17,1:4"},
        "the id of the last event received: the stream resumes right after it",
    ),
    Param(
        "last_event_id",
        "query",
        {"type": "string"},
        f"the same as the {_LAST_EVENT_ID} header, for clients that cannot set headers",
    ),
)


def _event_stream(description: str) -> tuple[str, dict[str, Any]]:
    return description, {
        "text/event-stream": {
            "type": "string",
            "description": (
                "Server-Sent Events: `id:` (a cursor), `event:` (`state`, `status` or "
                "`progress`) and `data:` (JSON, see x-event-data); a `: keep-alive` "
                "comment every 15 s by default (API_EVENTS_KEEPALIVE_S)."
            ),
            "x-event-data": EVENT_PAYLOAD_SCHEMA,
        }
    }


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/transcribe/{job_id}/events",
            job_events,
            "Follow one job: its state now, then each status and progress event until it ends",
            "events",
            Access.KEY,
            params=(_JOB_ID, *_RESUME),
            responses={
                200: _event_stream(
                    "The job's state, its events as they happen, the terminal event, the end"
                ),
                204: ("Resumed after the job's terminal event: nothing more will come", None),
                404: problem("No such job for this key"),
                422: problem("A Last-Event-ID this API did not write"),
                503: problem("The status topic cannot be read"),
            },
        ),
        Operation(
            "GET",
            "/jobs/events",
            jobs_events,
            "Follow every job of this key (an admin key: every job, or one owner's)",
            "events",
            Access.KEY,
            params=(
                Param("owner", "query", {"type": "string"}, "admin keys only: one owner's jobs"),
                *_RESUME,
            ),
            responses={
                200: _event_stream(
                    f"A `state` event for each unfinished job (at most {SNAPSHOT_LIMIT} per "
                    "status), then every event of the key's jobs; it does not end by itself"
                ),
                422: problem("An unknown query parameter or a bad Last-Event-ID"),
                503: problem("The status topic or Postgres cannot be read"),
            },
        ),
    )
