"""`/openapi.json` (built from the route table), `/docs` and `/metrics`."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import swagger_ui_bundle
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from db.lag_queries import read_projector_lag
from producer_api.appkeys import ENGINE_KEY, METRICS_KEY, OPERATIONS_KEY, SETTINGS_KEY
from producer_api.openapi import Access, Operation, Param, json_body

log = logging.getLogger(__name__)
API_TITLE = "whisperstream API"
API_VERSION = "0.1.0"

# Swagger UI's files come from the swagger-ui-bundle-v2 wheel and are served by the API
# itself, so /docs works where no CDN can be reached.
_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>whisperstream API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body></html>
"""
_DOCS_INIT_JS = """window.ui = SwaggerUIBundle({
  url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout'
});
"""
_STATIC_TYPES = {".css": "text/css", ".js": "application/javascript"}
_STATIC_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}
)


async def openapi_json(request: web.Request) -> web.Response:
    spec = request.app[OPERATIONS_KEY].spec(API_TITLE, API_VERSION)
    return web.Response(text=json.dumps(spec), content_type="application/json")


async def docs(_request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_HTML, content_type="text/html")


async def docs_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "docs-init.js":
        return web.Response(text=_DOCS_INIT_JS, content_type="application/javascript")
    if name not in _STATIC_FILES:  # a fixed list: no path from the URL reaches the disk
        raise web.HTTPNotFound
    path = Path(swagger_ui_bundle.swagger_ui_path) / name
    return web.FileResponse(
        path, headers={"Content-Type": _STATIC_TYPES[path.suffix], "Cache-Control": "max-age=86400"}
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS_KEY]
    settings = request.app[SETTINGS_KEY]
    try:
        rows = await asyncio.wait_for(
            read_projector_lag(request.app[ENGINE_KEY], settings.projector_group_id), 2.0
        )
    except (TimeoutError, SQLAlchemyError, OSError):
        log.warning("projector lag unavailable for /metrics", exc_info=True)
    else:
        registry.set_projector_lag({(row.topic, row.partition): row.lag for row in rows})
    return registry.exposition()


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/openapi.json",
            openapi_json,
            "This OpenAPI document",
            "meta",
            Access.PUBLIC,
            responses={200: json_body("OpenAPI 3.1 document", {"type": "object"})},
        ),
        Operation(
            "GET",
            "/docs",
            docs,
            "Swagger UI for the OpenAPI document",
            "meta",
            Access.PUBLIC,
            responses={200: ("HTML page", {"text/html": {"type": "string"}})},
        ),
        Operation(
            "GET",
            "/docs/static/{name}",
            docs_static,
            "Swagger UI's scripts and styles",
            "meta",
            Access.PUBLIC,
            params=(Param("name", "path", {"type": "string"}, required=True),),
            responses={
                200: ("a script or style sheet", {"application/javascript": {"type": "string"}}),
                404: ("no such file", None),
            },
        ),
        Operation(
            "GET",
            "/metrics",
            metrics,
            "Prometheus metrics",
            "meta",
            Access.PUBLIC,
            responses={200: ("Prometheus text format", {"text/plain": {"type": "string"}})},
        ),
    )
