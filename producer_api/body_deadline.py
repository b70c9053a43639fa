"""Cut off request bodies that arrive too slowly (a slow-loris upload).

aiohttp waits for a body as long as bytes keep trickling in. This middleware gives each
body ``timeout_s`` plus one second per ``min_rate`` bytes received so far; a body still
incomplete past that deadline ends the handler (an upload in progress is aborted and its
object deleted by the upload's own cleanup) and the client gets 408. The API keeps
serving other clients meanwhile: a slow body costs one idle coroutine, not a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler

from producer_api.problems import ProblemError

_MAX_CHECK_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class BodyDeadline:
    timeout_s: float
    min_rate_bytes_s: int


BODY_DEADLINE_KEY = web.AppKey("body_deadline", BodyDeadline)


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    limits = request.app[BODY_DEADLINE_KEY]
    deadline = asyncio.timeout(None)
    try:
        async with deadline:
            watch = asyncio.create_task(_watch(request.content, deadline, limits))
            try:
                return await handler(request)
            finally:
                watch.cancel()
    except TimeoutError:
        if not deadline.expired():
            raise  # the handler's own timeout, not the body's
        raise ProblemError(
            408,
            "Request Timeout",
            f"the request body arrived slower than {limits.min_rate_bytes_s} bytes/s "
            f"after a grace of {limits.timeout_s:g} s (API_BODY_TIMEOUT_S, "
            "API_BODY_MIN_RATE_BYTES_S)",
            slug="body-too-slow",
            headers={"Connection": "close"},
        ) from None


async def _watch(content: StreamReader, deadline: asyncio.Timeout, limits: BodyDeadline) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not content.is_eof():
        due = started + limits.timeout_s + content.total_bytes / limits.min_rate_bytes_s
        deadline.reschedule(due)
        await asyncio.sleep(min(_MAX_CHECK_INTERVAL_S, max(0.01, due - loop.time())))
    deadline.reschedule(None)
