"""The chaos run's webhook receiver: verifies each callback with the `standardwebhooks`
library and counts deliveries per `webhook-id`, in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True, slots=True)
class Callback:
    webhook_id: str
    job_id: str
    event_type: str
    arrived: float
    """time.monotonic() of its first arrival"""


@dataclass
class ChaosReceiver:
    secret: str
    callbacks: dict[str, Callback] = field(default_factory=dict)
    """first arrival per webhook-id"""
    arrivals: Counter[str] = field(default_factory=Counter)
    """verified arrivals per webhook-id (a redelivery of one id counts again)"""
    forged: int = 0
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the webhook receiver did not start")

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def completed_by_job(self) -> dict[str, list[Callback]]:
        found: dict[str, list[Callback]] = {}
        with self._lock:
            for callback in self.callbacks.values():
                if callback.event_type == "transcription.completed":
                    found.setdefault(callback.job_id, []).append(callback)
        return found

    def _serve(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        started.set()
        loop.run_forever()
        loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.forged += 1
            return web.Response(status=401)
        webhook_id = headers["webhook-id"]
        with self._lock:
            self.arrivals[webhook_id] += 1
            self.callbacks.setdefault(
                webhook_id,
                Callback(
                    webhook_id, str(payload["job_id"]), str(payload["type"]), time.monotonic()
                ),
            )
        return web.Response(status=204)
