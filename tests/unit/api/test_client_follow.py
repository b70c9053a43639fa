"""`submit --wait`'s client: it follows a job's event stream, resumes a broken stream
from its last event id, and falls back to polling a server that has no streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from rich.progress import Progress

from whisperstream.cli.client_cmds import _await_job
from whisperstream.client.api import ApiClient, EventsUnavailableError

JOB = "0b6c4a1e-7a43-4a0e-9a57-3f0c1d7d1c11"
EVENTS = [
    ("0:1", {"job_id": JOB, "status": "pending", "progress": 0.0}),
    ("0:2", {"job_id": JOB, "status": "processing", "progress": 0.0}),
    ("0:3", {"job_id": JOB, "status": "processing", "progress": 0.5}),
    ("0:4", {"job_id": JOB, "status": "completed", "progress": 1.0}),
]
COMPLETED = {"job_id": JOB, "status": "completed", "progress": 1.0}


def _frame(event_id: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: status\ndata: {json.dumps(data)}\n\n".encode()


async def _job(_request: web.Request) -> web.Response:
    return web.json_response(COMPLETED)


@pytest.fixture
async def breaking_server() -> AsyncIterator[tuple[BaseTestServer, list[str | None]]]:
    """Streams two events per connection, then drops it; resumes after Last-Event-ID."""
    asked: list[str | None] = []

    async def events(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        asked.append(last)
        ids = [event_id for event_id, _ in EVENTS]
        start = ids.index(last) + 1 if last else 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": hello\n\n")
        for event_id, data in EVENTS[start : start + 2]:
            await response.write(_frame(event_id, data))
        return response

    app = web.Application()
    app.router.add_get("/transcribe/{job_id}/events", events)
    app.router.add_get("/transcribe/{job_id}", _job)
    async with TestServer(app) as server:
        yield server, asked


@pytest.fixture
async def older_server() -> AsyncIterator[BaseTestServer]:
    app = web.Application()
    app.router.add_get("/transcribe/{job_id}", _job)
    async with TestServer(app) as server:
        yield server


async def test_a_broken_stream_is_resumed_without_loss_or_repeats(
    breaking_server: tuple[BaseTestServer, list[str | None]],
) -> None:
    server, asked = breaking_server
    async with ApiClient(str(server.make_url("")), "key") as client:
        seen = [event async for event in client.follow(JOB)]
    assert seen == [data for _, data in EVENTS]
    assert asked == [None, "0:2"]


async def test_a_server_without_streams_is_polled(older_server: BaseTestServer) -> None:
    async with ApiClient(str(older_server.make_url("")), "key") as client:
        with pytest.raises(EventsUnavailableError):
            _ = [event async for event in client.follow(JOB)]
        with Progress(disable=True) as progress:
            bar = progress.add_task("jfk.flac pending", total=1)
            job = await _await_job(client, progress, bar, JOB)
    assert job == COMPLETED
