"""Shared steps of the hostile-input tests: an API with chosen limits, raw HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.integration.api.conftest import Api, start_api
from whisperstream.settings import Settings


@asynccontextmanager
async def api_with(settings: Settings, **update: Any) -> AsyncIterator[Api]:
    changed = settings.model_copy(update=update)
    client, engine, store, (user, other, admin) = await start_api(changed)
    try:
        yield Api(client, changed, engine, store, user, other, admin)
    finally:
        await client.close()
        store.close()
        await engine.dispose()


def uploads(api: Api) -> set[str]:
    return set(api.store.list_keys(api.settings.audio_bucket, "uploads/"))


async def raw_connection(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = api.client.server
    return await asyncio.open_connection(server.host, server.port)


async def read_status_line(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> str:
    line = await asyncio.wait_for(reader.readline(), timeout_s)
    return line.decode("latin-1").strip()


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout_s)


async def read_one_response(reader: asyncio.StreamReader, timeout_s: float = 30.0) -> bytes:
    """One response (status line, headers, a Content-Length body), without waiting for
    the server to close the connection (it lingers over a body it did not read)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await asyncio.wait_for(reader.readexactly(length), timeout_s)
