"""A real HTTP receiver on loopback whose answer each test chooses by path.

``/ok`` 200; ``/status/{code}`` that code; ``/flaky/{n}`` 500 to the first ``n``
requests of a webhook-id, then 200; ``/hang`` never answers in time; ``/kill`` sends
SIGKILL to ``kill_pid`` (the notifier) before answering 200, i.e. between the
notifier's send and its record; ``/redirect`` 302 to ``/ok``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    received: list[Received] = field(default_factory=list)
    kill_pid: int | None = None
    base_url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    """Requests being answered at once, at most (a client that gave up cancels its
    handler, so this is what the client holds open)."""
    _runner: web.AppRunner | None = None
    _seen: Counter[str] = field(default_factory=Counter)

    def to(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def of(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.text()
        got = Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body)
        self.received.append(got)
        self._seen[f"{request.path} {got.headers.get('webhook-id')}"] += 1
        parts = request.path.strip("/").split("/")
        kind = parts[0]
        if kind == "status":
            return web.Response(status=int(parts[1]))
        if kind == "flaky":
            seen = self._seen[f"{request.path} {got.headers.get('webhook-id')}"]
            return web.Response(status=500 if seen <= int(parts[1]) else 200)
        if kind == "hang":
            await asyncio.sleep(5)  # well past the tests' WEBHOOK_TIMEOUT_S
        if kind == "kill" and self.kill_pid is not None and len(self.of(request.path)) == 1:
            os.kill(self.kill_pid, signal.SIGKILL)
        if kind == "redirect":
            raise web.HTTPFound(self.to("/ok"))
        return web.Response(status=200, text="thanks")
