"""Round trips, framing detection and poison-message handling of the event codec."""

from __future__ import annotations

import dataclasses
import io
import json

import fastavro
import pytest

from schemas.codec import EventCodec
from schemas.errors import EventEncodingError, SchemaError, UndecodableEvent
from schemas.events import (
    CancelRequested,
    Event,
    JobStatusChanged,
    Priority,
    TranscriptionRequested,
    WorkerHeartbeat,
)


def test_round_trip_binary(codec: EventCodec, sample: Event) -> None:
    value = codec.encode(sample)

    assert codec.decode(value, type(sample)) == sample
    assert codec.decode_any(value) == sample


def test_round_trip_json(codec: EventCodec, sample: Event) -> None:
    value = codec.encode_json(sample)

    assert value.startswith(b"{")
    assert codec.decode(value, type(sample)) == sample
    assert codec.decode_any(value) == sample


def test_decoded_enums_are_enum_members(
    codec: EventCodec, request_event: TranscriptionRequested
) -> None:
    decoded = codec.decode(codec.encode(request_event), TranscriptionRequested)

    assert type(decoded.priority) is Priority
    assert decoded.occurred_at.tzinfo is not None


def test_writes_single_object_encoding(codec: EventCodec, sample: Event) -> None:
    value = codec.encode(sample)
    current = codec.current_schema(type(sample))

    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == current.fingerprint
    body = fastavro.schemaless_reader(io.BytesIO(value[10:]), current.parsed, None)
    assert isinstance(body, dict)


def test_json_encoding_tags_unions(
    codec: EventCodec, request_event: TranscriptionRequested
) -> None:
    document = json.loads(codec.encode_json(request_event))

    assert document["language"] == {"string": "en"}
    assert document["options"]["beam_size"] == {"int": 5}
    assert document["occurred_at"] == int(request_event.occurred_at.timestamp() * 1000)


def test_decodes_hand_written_json_with_defaults_omitted(codec: EventCodec) -> None:
    # What an operator types for kcat: only the required fields.
    value = json.dumps(
        {
            "event_id": "5d0e3f70-4444-4d4d-8d8d-000000000009",
            "job_id": "6f1c1e7a-3b8e-4c55-9a57-0d6f9e3c2b10",
            "occurred_at": 1773500966535,
            "audio": {
                "uri": "s3://audio/uploads/x/jfk.flac",
                "size_bytes": 360000,
                "sha256": "9f" * 32,
                "content_type": "audio/flac",
                "original_filename": "jfk.flac",
            },
            "model": "tiny.en",
            "language": {"string": "en"},
        },
        indent=2,
    ).encode()

    event = codec.decode(value, TranscriptionRequested)

    assert event.priority is Priority.NORMAL
    assert event.attempt == 1
    assert event.language == "en"
    assert event.engine is None
    assert event.options.beam_size is None
    assert event.occurred_at.year == 2026


def test_wrong_event_type_is_undecodable(codec: EventCodec, all_samples: list[Event]) -> None:
    cancel = next(e for e in all_samples if isinstance(e, CancelRequested))
    for value in (codec.encode(cancel), codec.encode_json(cancel)):
        with pytest.raises(UndecodableEvent, match="JobStatusChanged") as caught:
            codec.decode(value, JobStatusChanged)
        assert caught.value.raw == value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"\xc3",
        b"\xc3\x01\x01\x02",
        b"\xff" * 64,
        b"{not json",
        b"{}",
        b'{"event_id": "x"}',
        b"[1, 2]",
        b"\x00\x00\x00\x00\x01abc",
        "not bytes",
    ],
)
def test_garbage_is_undecodable(codec: EventCodec, value: bytes) -> None:
    with pytest.raises(UndecodableEvent) as caught:
        codec.decode_any(value)

    assert isinstance(caught.value, SchemaError)
    assert str(caught.value)


def test_every_truncation_is_undecodable(codec: EventCodec, sample: Event) -> None:
    value = codec.encode(sample)
    for end in range(len(value)):
        with pytest.raises(UndecodableEvent) as caught:
            codec.decode_any(value[:end])
        assert caught.value.raw == value[:end]


def test_trailing_bytes_are_undecodable(codec: EventCodec, sample: Event) -> None:
    with pytest.raises(UndecodableEvent, match="trailing"):
        codec.decode_any(codec.encode(sample) + b"\x00")


def test_unknown_fingerprint_is_undecodable(codec: EventCodec, sample: Event) -> None:
    value = bytearray(codec.encode(sample))
    value[2] ^= 0xFF

    with pytest.raises(UndecodableEvent, match="unknown schema fingerprint"):
        codec.decode_any(bytes(value))


def test_corrupt_body_is_undecodable(
    codec: EventCodec, request_event: TranscriptionRequested
) -> None:
    value = bytearray(codec.encode(request_event))
    value[10] = 0x7F  # event_id length becomes -64: a negative string length

    with pytest.raises(UndecodableEvent) as caught:
        codec.decode(bytes(value), TranscriptionRequested)
    assert caught.value.__cause__ is not None


def test_enum_symbol_outside_the_schema_is_undecodable(codec: EventCodec) -> None:
    value = codec.encode_json(_with(codec, status="processing"))
    document = json.loads(value)
    document["status"] = "exploded"

    with pytest.raises(UndecodableEvent):
        codec.decode(json.dumps(document).encode(), JobStatusChanged)


def test_contract_violation_in_values_is_undecodable(codec: EventCodec) -> None:
    document = json.loads(codec.encode_json(_with(codec, status="processing")))
    document["progress"] = 1.5

    with pytest.raises(UndecodableEvent, match="progress"):
        codec.decode(json.dumps(document).encode(), JobStatusChanged)


def test_ambiguous_json_is_undecodable(codec: EventCodec) -> None:
    with pytest.raises(UndecodableEvent, match="match"):
        codec.decode_any(b'{"unknown_field": 1}')


def test_encoding_a_value_of_the_wrong_type_fails(
    codec: EventCodec, all_samples: list[Event]
) -> None:
    heartbeat = next(e for e in all_samples if isinstance(e, WorkerHeartbeat))
    wrong = dataclasses.replace(heartbeat, pid="4242")  # type: ignore[arg-type]

    with pytest.raises(EventEncodingError, match="WorkerHeartbeat"):
        codec.encode(wrong)
    with pytest.raises(EventEncodingError, match="WorkerHeartbeat"):
        codec.encode_json(wrong)


def test_encoding_a_non_event_fails(codec: EventCodec) -> None:
    with pytest.raises(EventEncodingError, match="not an event type"):
        codec.encode(object())  # type: ignore[arg-type]


def _with(codec: EventCodec, status: str) -> JobStatusChanged:
    document = {
        "event_id": "e",
        "job_id": "j",
        "occurred_at": 0,
        "seq": 1,
        "status": status,
    }
    return codec.decode(json.dumps(document).encode(), JobStatusChanged)
