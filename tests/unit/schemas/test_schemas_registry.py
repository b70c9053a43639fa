"""Confluent Schema Registry framing: 00 + 4-byte big-endian schema id + Avro body."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from schemas.codec import EventCodec
from schemas.errors import RegistryUnavailableError, UndecodableEvent
from schemas.events import TranscriptionRequested
from schemas.history import load_history

CURRENT = load_history()["TranscriptionRequested"][-1]
SCHEMA_ID = 17


def confluent(schema_id: int, single_object: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + single_object[10:]


class FakeRegistry:
    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.lookups: list[int] = []
        self.down = False

    def schema_text(self, schema_id: int) -> str | None:
        self.lookups.append(schema_id)
        if self.down:
            raise RegistryUnavailableError("registry down")
        return self.schemas.get(schema_id)

    def close(self) -> None:
        pass


def test_confluent_framing_is_undecodable_without_a_registry(
    codec: EventCodec, request_event: TranscriptionRequested
) -> None:
    with pytest.raises(UndecodableEvent, match="no schema registry"):
        codec.decode_any(confluent(SCHEMA_ID, codec.encode(request_event)))


def test_decodes_confluent_framing_and_caches_the_schema(
    request_event: TranscriptionRequested,
) -> None:
    registry = FakeRegistry({SCHEMA_ID: json.dumps(CURRENT.schema)})
    codec = EventCodec(registry=registry)
    value = confluent(SCHEMA_ID, codec.encode(request_event))

    assert codec.decode(value, TranscriptionRequested) == request_event
    assert codec.decode_any(value) == request_event
    assert registry.lookups == [SCHEMA_ID]


def test_unknown_or_foreign_schema_ids_are_undecodable(
    request_event: TranscriptionRequested,
) -> None:
    foreign = {"type": "record", "name": "Invoice", "fields": [{"name": "n", "type": "long"}]}
    registry = FakeRegistry({1: json.dumps(foreign), 2: "not json"})
    codec = EventCodec(registry=registry)
    body = codec.encode(request_event)

    for schema_id in (1, 2, 3):
        with pytest.raises(UndecodableEvent):
            codec.decode_any(confluent(schema_id, body))
    with pytest.raises(UndecodableEvent, match="truncated"):
        codec.decode_any(b"\x00\x00\x01")


def test_registry_outage_is_not_a_poison_message(request_event: TranscriptionRequested) -> None:
    registry = FakeRegistry({SCHEMA_ID: json.dumps(CURRENT.schema)})
    registry.down = True
    codec = EventCodec(registry=registry)

    with pytest.raises(RegistryUnavailableError):
        codec.decode_any(confluent(SCHEMA_ID, codec.encode(request_event)))


class _RegistryHandler(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, str]] = {SCHEMA_ID: json.dumps(CURRENT.schema)}

    def do_GET(self) -> None:
        match = re.match(r"^/schemas/ids/(\d+)", self.path)
        text = self.schemas.get(int(match.group(1))) if match else None
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


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RegistryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_registry_client(registry_url: str, request_event: TranscriptionRequested) -> None:
    with EventCodec(schema_registry_url=registry_url) as codec:
        body = codec.encode(request_event)

        assert codec.decode_any(confluent(SCHEMA_ID, body)) == request_event
        with pytest.raises(UndecodableEvent, match="not in the registry"):
            codec.decode_any(confluent(SCHEMA_ID + 1, body))
