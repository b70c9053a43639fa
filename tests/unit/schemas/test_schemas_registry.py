"""Confluent Schema Registry framing: 00 + 4-byte big-endian schema id + Avro body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from schemas.codec import EventCodec
from schemas.errors import RegistryUnavailableError, UndecodableEvent
from schemas.events import TranscriptionRequested
from schemas.history import load_history
from tests.support.registry import FakeRegistry, serve_registry

CURRENT = load_history()["TranscriptionRequested"][-1]
SCHEMA_ID = 17


def confluent(schema_id: int, single_object: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + single_object[10:]


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


@pytest.fixture
def registry_url() -> Iterator[str]:
    with serve_registry({SCHEMA_ID: json.dumps(CURRENT.schema)}) as (url, _server):
        yield url


def test_real_registry_client(registry_url: str, request_event: TranscriptionRequested) -> None:
    with EventCodec(schema_registry_url=registry_url) as codec:
        body = codec.encode(request_event)

        assert codec.decode_any(confluent(SCHEMA_ID, body)) == request_event
        with pytest.raises(UndecodableEvent, match="not in the registry"):
            codec.decode_any(confluent(SCHEMA_ID + 1, body))
