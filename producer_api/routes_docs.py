"""`/openapi.json` (built from the route table), `/docs` and `/metrics`."""

from __future__ import annotations

import json

from aiohttp import web

from producer_api.appkeys import METRICS_KEY, OPERATIONS_KEY
from producer_api.openapi import Access, Operation, json_body

API_TITLE = "whisperstream API"
API_VERSION = "0.1.0"

# No CDN can be reached from where this runs, so /docs is not Swagger UI: it is a small
# self-contained page that renders the same /openapi.json (operations, parameters,
# request bodies and responses) with a few lines of inline script.
_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>whisperstream API</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}
.op{border:1px solid #ccc;border-radius:6px;margin:.6rem 0;padding:.4rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:bold}
.GET{color:#0a6}.POST{color:#06c}.DELETE{color:#c22}
code,pre{background:#f5f5f5;padding:0 .2rem}pre{padding:.5rem;overflow:auto}
</style></head>
<body><h1>whisperstream API</h1>
<p>The machine-readable spec is at <a href="/openapi.json">/openapi.json</a>
(OpenAPI 3.1; load it into any OpenAPI viewer).</p><div id="ops">loading...</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const root = document.getElementById('ops'); root.textContent = '';
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const d = document.createElement('details'); d.className = 'op';
      const s = document.createElement('summary');
      s.innerHTML = '<span class="m ' + method.toUpperCase() + '">' + method.toUpperCase() +
        '</span><code></code> <span></span>';
      s.querySelector('code').textContent = path;
      s.querySelector('span:last-child').textContent = op.summary + ' [' + op['x-access'] + ']';
      const pre = document.createElement('pre');
      pre.textContent = JSON.stringify({parameters: op.parameters, requestBody: op.requestBody,
        responses: op.responses}, null, 2);
      d.append(s, pre); root.append(d);
    }
  }
});
</script></body></html>
"""


async def openapi_json(request: web.Request) -> web.Response:
    spec = request.app[OPERATIONS_KEY].spec(API_TITLE, API_VERSION)
    return web.Response(text=json.dumps(spec), content_type="application/json")


async def docs(_request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_HTML, content_type="text/html")


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS_KEY].exposition()


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
            "A browsable page of the OpenAPI document",
            "meta",
            Access.PUBLIC,
            responses={200: ("HTML page", {"text/html": {"type": "string"}})},
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
