"""Schema Registry stand-ins for tests: an in-memory `WriterSchemaSource`, and an HTTP
server answering the registry's `GET /schemas/ids/{id}` for the real client.

The local stack has no Schema Registry; `tests/integration/contracts/` checks the fake
against the real `ConfluentSchemaRegistry` client talking to the HTTP server.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from schemas.errors import RegistryUnavailableError


class FakeRegistry:
    """`WriterSchemaSource` (the real one: `schemas.codec.ConfluentSchemaRegistry`).

    `down` makes every lookup fail as an unreachable registry does; `lookups` lists the
    ids asked for.
    """

    def __init__(self, schemas: Mapping[int, str]) -> None:
        self.schemas = dict(schemas)
        self.lookups: list[int] = []
        self.down = False

    def schema_text(self, schema_id: int) -> str | None:
        self.lookups.append(schema_id)
        if self.down:
            raise RegistryUnavailableError("registry down")
        return self.schemas.get(schema_id)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def serve_registry(schemas: Mapping[int, str]) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """An HTTP server answering `GET /schemas/ids/{id}` as Confluent's registry does
    (404 with error code 40403 for an unknown id); yields its URL and the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = re.match(r"^/schemas/ids/(\d+)", self.path)
            text = schemas.get(int(match.group(1))) if match else None
            if text is None:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            else:
                self._reply(200, {"schema": text})

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
