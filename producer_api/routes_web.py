"""The web page for people: `/` and its scripts and styles under `/web/`.

The files ship inside the package (producer_api/web, package data), so an installed
API serves the page with no build step and nothing fetched from a CDN. The page signs
in with an API key it keeps in the browser and calls the same API as everyone else.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from aiohttp import web

from producer_api.openapi import Access, Operation, Param

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(js|css|svg)$")
# the page talks only to this API; the player reads audio from S3 (another origin)
_CSP = (
    "default-src 'self'; media-src 'self' http: https:; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def _assets() -> dict[str, bytes]:
    """Every file of the page by name, read once (a few tens of KB). Only these names
    are served: no path from the URL reaches the disk."""
    folder = resources.files("producer_api") / "web"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and (entry.name == "index.html" or _NAME.fullmatch(entry.name))
    }


def _asset(name: str) -> bytes | None:
    return _assets().get(name)


def _suffix(name: str) -> str:
    return name[name.rfind(".") :]


async def index(_request: web.Request) -> web.Response:
    body = _asset("index.html")
    if body is None:
        raise web.HTTPNotFound
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )


async def web_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = _asset(name)
    if body is None:
        raise web.HTTPNotFound
    return web.Response(
        body=body,
        content_type=_TYPES[_suffix(name)],
        charset="utf-8" if _suffix(name) != ".svg" else None,
        # no-cache: the browser revalidates, so an upgraded API never runs old scripts
        headers={**_HEADERS, "Cache-Control": "no-cache"},
    )


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/",
            index,
            "The web page: sign in with an API key, upload, follow jobs, read transcripts",
            "meta",
            Access.PUBLIC,
            responses={200: ("HTML page", {"text/html": {"type": "string"}})},
        ),
        Operation(
            "GET",
            "/web/{name}",
            web_asset,
            "The web page's scripts and styles",
            "meta",
            Access.PUBLIC,
            params=(Param("name", "path", {"type": "string"}, required=True),),
            responses={
                200: ("a script or style sheet", {"text/javascript": {"type": "string"}}),
                404: ("no such file", None),
            },
        ),
    )
