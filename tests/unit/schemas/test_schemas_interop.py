"""Interoperability with independent Avro implementations.

The fingerprint is computed here from the specification alone (Parsing Canonical Form
and the CRC-64-AVRO Rabin fingerprint), and bodies are written and read by the
``avro`` package as well as by fastavro used directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest

from schemas.codec import EventCodec
from schemas.events import Event, TranscriptionRequested
from schemas.history import load_history

CURRENT = {name: versions[-1] for name, versions in load_history().items()}

_EMPTY = 0xC15D213AA4D7A795
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_KEPT = ("name", "type", "fields", "symbols", "items", "values", "size")


def _rabin_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


def crc64_avro(data: bytes) -> int:
    table = _rabin_table()
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def canonical(schema: Any, namespace: str = "") -> Any:
    """The spec's Parsing Canonical Form transformations, as a JSON-ready value."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES or "." in schema or not namespace:
            return schema
        return f"{namespace}.{schema}"
    if isinstance(schema, list):
        return [canonical(branch, namespace) for branch in schema]
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return kind  # logicalType and every other attribute are dropped
    out: dict[str, Any] = {}
    if "name" in schema:
        name = schema["name"]
        namespace = schema.get("namespace", namespace)
        if "." not in name and namespace:
            name = f"{namespace}.{name}"
        namespace = name.rsplit(".", 1)[0] if "." in name else ""
        out["name"] = name
    out["type"] = kind
    if "fields" in schema:
        out["fields"] = [
            {"name": f["name"], "type": canonical(f["type"], namespace)} for f in schema["fields"]
        ]
    if "symbols" in schema:
        out["symbols"] = schema["symbols"]
    if "items" in schema:
        out["items"] = canonical(schema["items"], namespace)
    if "values" in schema:
        out["values"] = canonical(schema["values"], namespace)
    if "size" in schema:
        out["size"] = schema["size"]
    return {key: out[key] for key in _KEPT if key in out}


def canonical_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(canonical(schema), separators=(",", ":"), ensure_ascii=False)


def header(schema: Mapping[str, Any]) -> bytes:
    return b"\xc3\x01" + crc64_avro(canonical_text(schema).encode()).to_bytes(8, "little")


def test_rabin_matches_the_specification_vector() -> None:
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_fingerprints_agree_across_implementations(name: str, codec: EventCodec) -> None:
    version = CURRENT[name]
    text = canonical_text(version.schema)

    assert text == version.canonical_form
    assert header(version.schema)[2:] == version.fingerprint
    # The avro package agrees given the canonical form. (Given the raw schema it keeps
    # {"type":"long"} for logical types, which is not the spec's canonical form.)
    assert avro.schema.parse(text).fingerprint("CRC-64-AVRO") == version.fingerprint


def _avro_body(schema_text: str, datum: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(schema_text)).write(datum, avro.io.BinaryEncoder(out))
    return out.getvalue()


def test_bytes_from_independent_writers_decode(
    codec: EventCodec, request_event: TranscriptionRequested
) -> None:
    schema = CURRENT["TranscriptionRequested"].schema
    datum = {
        **{name: getattr(request_event, name) for name in ("event_id", "job_id", "model")},
        "occurred_at": request_event.occurred_at,
        "priority": "high",
        "attempt": 2,
        "not_before": request_event.not_before,
        "audio": {
            "uri": request_event.audio.uri,
            "size_bytes": request_event.audio.size_bytes,
            "sha256": request_event.audio.sha256,
            "content_type": request_event.audio.content_type,
            "original_filename": request_event.audio.original_filename,
        },
        "engine": "faster-whisper",
        "language": "en",
        "task": "translate",
        "options": {
            "initial_prompt": "Kennedy, inaugural address",
            "word_timestamps": True,
            "temperature": 0.2,
            "beam_size": 5,
            "vad_filter": True,
        },
        "owner": "alice",
        "idempotency_key": "upload-42",
        "callback_url": "https://example.test/hook",
        "source": "api",
        "correlation_id": "req-7",
    }
    fast = io.BytesIO()
    fastavro.schemaless_writer(fast, fastavro.parse_schema(dict(schema), named_schemas={}), datum)
    slow = _avro_body(json.dumps(schema), datum)

    assert fast.getvalue() == slow
    assert codec.decode(header(schema) + slow, TranscriptionRequested) == request_event
    assert codec.encode(request_event) == header(schema) + slow


def test_codec_bytes_decode_with_the_avro_package(codec: EventCodec, sample: Event) -> None:
    version = CURRENT[type(sample).__name__]
    value = codec.encode(sample)
    assert value[:10] == header(version.schema)

    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(version.schema)))
    record = reader.read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))
    assert isinstance(record, dict)

    for name in ("event_id", "job_id", "worker_id", "occurred_at"):
        if hasattr(sample, name):
            assert record[name] == getattr(sample, name), name
