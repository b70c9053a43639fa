"""`GET /health`: liveness only; it touches no dependency."""

from __future__ import annotations

from aiohttp import web

from producer_api.openapi import Access, Operation, json_body


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/health",
            health,
            "Liveness: the process answers",
            "health",
            Access.PUBLIC,
            responses={200: json_body("Alive", {"type": "object"})},
        ),
    )
