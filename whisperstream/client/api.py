"""Async calls to the whisperstream API: submit a file, read or follow a job, fetch a result."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from whisperstream.errors import WhisperstreamError

CHUNK = 256 * 1024
# CLI format names -> the API's ?format= values
FORMATS = {"json": "json", "txt": "text", "text": "text", "srt": "srt", "vtt": "vtt", "tsv": "tsv"}
TERMINAL = frozenset({"completed", "failed", "cancelled"})
# The server sends a keep-alive comment every 15 s by default: a stream silent for this
# long has stalled and is opened again from its last event.
STREAM_READ_TIMEOUT_S = 60.0
STREAM_RECONNECTS = 3


class ApiError(WhisperstreamError):
    """The API answered with an error; the message carries its problem detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class EventsUnavailableError(WhisperstreamError):
    """The server does not stream job events (an older server), or the stream keeps
    breaking: follow the job by polling instead."""


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 600) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # the session needs the running loop, so it is made here, not in __init__
        self._http = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("use ApiClient as `async with ApiClient(...) as client`")
        return self._http

    async def submit(
        self,
        path: Path,
        options: dict[str, str],
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> dict[str, Any]:
        """Stream `path` to POST /transcribe; `on_bytes` is told of every chunk sent."""

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    on_bytes(len(chunk))
                    yield chunk

        form = aiohttp.FormData()
        for name, value in options.items():
            form.add_field(name, value)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        form.add_field("file", chunks(), filename=path.name, content_type=content_type)
        async with self._session.post(f"{self._base}/transcribe", data=form) as response:
            return await _json(response)

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self._session.get(f"{self._base}/transcribe/{job_id}") as response:
            return await _json(response)

    async def follow(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """Each event of `GET /transcribe/{id}/events` (the job's state first), until the
        terminal one; a broken stream is resumed from its last event id."""
        url = f"{self._base}/transcribe/{job_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=STREAM_READ_TIMEOUT_S)
        last_id: str | None = None
        for _attempt in range(STREAM_RECONNECTS + 1):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with self._session.get(url, headers=headers, timeout=timeout) as response:
                    if response.status == 204:  # resumed after the end: nothing more
                        return
                    if response.status != 200 or response.content_type != "text/event-stream":
                        raise EventsUnavailableError(f"no event stream (HTTP {response.status})")
                    async for event_id, data in _events(response.content):
                        last_id = event_id or last_id
                        yield data
                        if data.get("status") in TERMINAL:
                            return
            except (aiohttp.ClientError, TimeoutError):
                continue
        raise EventsUnavailableError(f"the event stream broke {STREAM_RECONNECTS + 1} times")

    async def jobs(self, params: dict[str, str]) -> dict[str, Any]:
        async with self._session.get(f"{self._base}/jobs", params=params) as response:
            return await _json(response)

    async def result(self, job_id: str, fmt: str) -> bytes:
        url = f"{self._base}/transcribe/{job_id}"
        async with self._session.get(url, params={"format": FORMATS[fmt]}) as response:
            if response.status >= 400:
                await _json(response)
            return await response.read()


async def _events(lines: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each Server-Sent Event whose data is a JSON object."""
    event_id: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                if isinstance(payload, dict):
                    yield event_id, payload
            data = []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "data":
            data.append(value)


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body: Any = await response.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError):
        body = {"detail": (await response.text())[:500]}
    if response.status >= 400:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        raise ApiError(response.status, str(detail))
    if not isinstance(body, dict):
        raise ApiError(response.status, f"unexpected body: {body!r}")
    return body
