"""`GET /health`: liveness only; it touches no dependency."""

from __future__ import annotations

from aiohttp import web


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def register(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/", health)
