"""Schema evolution: every released version against the current one, with real bytes.

Each pair is checked both ways: data written with an old version is read with the
current schema (backward) and data written with the current schema is read with the
old one (forward). The synthetic-version tests prove the codec resolves real
differences: an added field with a default, and an enum symbol an old reader lacks.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import fastavro.utils
import pytest

from schemas.codec import EventCodec
from schemas.events import Event, Priority, TranscriptionRequested
from schemas.history import SchemaVersion, load_history, parse_version

HISTORY = load_history()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAIRS = [(old, versions[-1]) for versions in HISTORY.values() for old in versions]


def _write(schema: Any, record: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> Any:
    body = io.BytesIO(data)
    record = fastavro.schemaless_reader(body, writer, reader)
    assert body.tell() == len(data)
    return record


def _common_fields_equal(left: Mapping[str, Any], right: Mapping[str, Any]) -> None:
    for name in left.keys() & right.keys():
        if isinstance(left[name], Mapping) and isinstance(right[name], Mapping):
            _common_fields_equal(left[name], right[name])
        else:
            assert _plain(left[name]) == _plain(right[name]), name


def _plain(value: Any) -> Any:
    """Generated data holds timestamp-millis as epoch ms; the reader gives datetimes."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return value


@pytest.mark.parametrize(
    ("old", "current"), PAIRS, ids=[f"{o.event}-v{o.version}" for o, _ in PAIRS]
)
def test_generated_data_resolves_both_ways(old: SchemaVersion, current: SchemaVersion) -> None:
    for writer, reader in ((old, current), (current, old)):
        for record in fastavro.utils.generate_many(writer.parsed, 50):
            resolved = _read(_write(writer.parsed, record), writer.parsed, reader.parsed)
            _common_fields_equal(record, resolved)


@pytest.mark.parametrize(
    ("old", "current"), PAIRS, ids=[f"{o.event}-v{o.version}" for o, _ in PAIRS]
)
def test_codec_bytes_resolve_both_ways(
    old: SchemaVersion, current: SchemaVersion, codec: EventCodec, all_samples: list[Event]
) -> None:
    samples = [e for e in all_samples if type(e).__name__ == current.event]
    assert samples
    for event in samples:
        # forward: what the codec writes today, read by a reader that only knows `old`
        value = codec.encode(event)
        assert value[2:10] == current.fingerprint
        as_old = _read(value[10:], current.parsed, old.parsed)
        # backward: the same data written by an `old` producer, decoded by the codec
        decoded = codec.decode_any(b"\xc3\x01" + old.fingerprint + _write(old.parsed, as_old))
        assert type(decoded) is type(event)
        if old is current:
            assert decoded == event


def _without_field(schema: Mapping[str, Any], name: str) -> dict[str, Any]:
    older = copy.deepcopy(dict(schema))
    older["fields"] = [f for f in older["fields"] if f["name"] != name]
    return older


def _history_with_older_request() -> tuple[dict[str, tuple[SchemaVersion, ...]], SchemaVersion]:
    current = HISTORY["TranscriptionRequested"][-1]
    older = parse_version(
        "TranscriptionRequested", 0, _without_field(current.schema, "correlation_id")
    )
    history = dict(HISTORY)
    history["TranscriptionRequested"] = (older, *HISTORY["TranscriptionRequested"])
    return history, older


def test_codec_reads_an_older_version_by_its_fingerprint(
    request_event: TranscriptionRequested,
) -> None:
    history, older = _history_with_older_request()
    codec = EventCodec(history=history)
    record = _read(
        EventCodec().encode(request_event)[10:],
        HISTORY["TranscriptionRequested"][-1].parsed,
        older.parsed,
    )
    assert "correlation_id" not in record
    value = b"\xc3\x01" + older.fingerprint + _write(older.parsed, record)

    decoded = codec.decode(value, TranscriptionRequested)

    assert decoded.correlation_id is None
    assert decoded.job_id == request_event.job_id
    assert decoded.options == request_event.options


def test_new_enum_symbol_reads_as_the_default(request_event: TranscriptionRequested) -> None:
    current = HISTORY["TranscriptionRequested"][-1]
    newer_schema = json.loads(json.dumps(current.schema))
    priority = next(f for f in newer_schema["fields"] if f["name"] == "priority")
    priority["type"]["symbols"].append("urgent")
    newer = parse_version("TranscriptionRequested", 99, newer_schema)
    history = dict(HISTORY)
    history["TranscriptionRequested"] = (newer, current)
    record = _read(EventCodec().encode(request_event)[10:], current.parsed, current.parsed)
    record["priority"] = "urgent"

    decoded = EventCodec(history=history).decode(
        b"\xc3\x01" + newer.fingerprint + _write(newer.parsed, record), TranscriptionRequested
    )

    assert decoded.priority is Priority.NORMAL
