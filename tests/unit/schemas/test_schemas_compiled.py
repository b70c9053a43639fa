"""The generated Avro writer and reader, on a schema that uses every construct they support.

The event schemas themselves are covered by the property test, which checks the generated
code byte for byte against fastavro; this file covers what those schemas do not use (maps,
floats, negative block counts, named-type references) and the error paths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import fastavro
import pytest

from schemas.compiled import UnsupportedSchemaError, compile_record
from schemas.events import EVENT_TYPES
from schemas.history import load_history


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True, slots=True)
class Inner:
    colour: Colour
    weight: float


@dataclass(frozen=True, slots=True)
class Outer:
    small: int
    big: int
    flag: bool
    ratio: float
    blob: bytes
    name: str
    at: datetime
    tags: list[str]
    scores: dict[str, int]
    inner: Inner
    again: Inner | None
    colours: list[Colour]


SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Outer",
    "namespace": "test.compiled",
    "fields": [
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "flag", "type": "boolean"},
        {"name": "ratio", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "name", "type": {"type": "string"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "scores", "type": {"type": "map", "values": "int"}},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {
                        "name": "colour",
                        "type": {"type": "enum", "name": "Colour", "symbols": ["red", "green"]},
                    },
                    {"name": "weight", "type": "float"},
                ],
            },
        },
        {"name": "again", "type": ["null", "test.compiled.Inner"]},
        {"name": "colours", "type": {"type": "array", "items": "Colour"}},
    ],
}

SAMPLE = Outer(
    small=-(2**31),
    big=2**63 - 1,
    flag=True,
    ratio=-1.5,
    blob=b"\x00\xff" * 100,
    name="Grüße, 世界",
    at=datetime(1969, 7, 20, 20, 17, 40, 123000, tzinfo=UTC),
    tags=[f"tag{i}" for i in range(70)],
    scores={"a": 1, "b": -300},
    inner=Inner(Colour.GREEN, 0.25),
    again=None,
    colours=[Colour.RED, Colour.GREEN],
)


FLAG = 15
"""Offset of "flag": after "small" and "big", whose extreme values take 5 and 10 bytes."""
BLOB = FLAG + 1 + 8
"""Offset of the length of "blob", after "flag" and the 8-byte "ratio"."""


def fastavro_bytes(value: Outer) -> bytes:
    record = {
        **{name: getattr(value, name) for name in Outer.__dataclass_fields__},
        "inner": {"colour": value.inner.colour, "weight": value.inner.weight},
        "again": None,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA, named_schemas={}), record)
    return out.getvalue()


def encode(value: Outer) -> bytes:
    out = bytearray()
    compile_record(SCHEMA, Outer).write(value, out)
    return bytes(out)


def decode(data: bytes) -> Outer:
    value, end = compile_record(SCHEMA, Outer).read(data, 0)
    assert end == len(data)
    assert isinstance(value, Outer)
    return value


def test_writes_what_fastavro_writes() -> None:
    assert encode(SAMPLE) == fastavro_bytes(SAMPLE)


def test_reads_back_equal_values_with_enum_members() -> None:
    value = decode(encode(SAMPLE))
    assert value == SAMPLE
    assert value.inner.colour is Colour.GREEN
    assert value.colours == [Colour.RED, Colour.GREEN]


def test_reads_from_the_given_offset_and_reports_the_end() -> None:
    data = b"prefix" + encode(SAMPLE) + b"suffix"
    value, end = compile_record(SCHEMA, Outer).read(data, 6)
    assert value == SAMPLE
    assert data[end:] == b"suffix"


def test_reads_arrays_written_in_several_blocks_with_byte_sizes() -> None:
    # The specification allows a negative count followed by the block's size in bytes.
    data = bytearray(encode(SAMPLE))
    start = data.index(b"\x8c\x01\x08tag0")  # count 70, zig-zagged, then "tag0"
    items = [bytes([len(tag) * 2]) + tag.encode() for tag in SAMPLE.tags]
    first, second = b"".join(items[:3]), b"".join(items[3:])
    blocks = b"\x05" + bytes([len(first) * 2]) + first + b"\x86\x01" + second + b"\x00"
    end = start + 2 + len(first) + len(second) + 1
    data[start:end] = blocks
    assert decode(bytes(data)) == SAMPLE


def test_accepts_a_non_minimal_varint() -> None:
    data = bytearray(encode(SAMPLE))
    # "again" is the null branch: index 0 written as 0x80 0x00 is still zero.
    position = len(data) - len(b"\x04\x00\x02\x00") - 1
    assert data[position] == 0
    data[position : position + 1] = b"\x80\x00"
    assert decode(bytes(data)) == SAMPLE


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("small", 2**31),
        ("big", -(2**63) - 1),
        ("small", "1"),
        ("flag", None),
        ("blob", "text"),
        ("name", b"bytes"),
        ("at", datetime(2020, 1, 1)),  # noqa: DTZ001 - a naive datetime is the error under test
        ("tags", [1]),
    ],
)
def test_writing_a_value_of_the_wrong_type_raises(field: str, bad: object) -> None:
    values = {name: getattr(SAMPLE, name) for name in Outer.__dataclass_fields__}
    values[field] = bad
    with pytest.raises((TypeError, ValueError, OverflowError, AttributeError, KeyError)):
        encode(Outer(**values))


def test_writing_an_unknown_enum_symbol_raises() -> None:
    with pytest.raises(KeyError):
        encode(replace(SAMPLE, inner=Inner("blue", 1.0)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("description", "mutate"),
    [
        ("truncated", lambda data: data[:-1]),
        ("negative bytes length", lambda data: data[:BLOB] + b"\x01" + data[BLOB + 1 :]),
        ("boolean byte 2", lambda data: data[:FLAG] + b"\x02" + data[FLAG + 1 :]),
        ("union branch 2", lambda data: data[:-5] + b"\x04" + data[-4:]),
        ("enum index out of range", lambda data: data[:-2] + b"\x06\x00"),
        ("int out of range", lambda data: b"\x80\x80\x80\x80\x10" + data[5:]),
        ("varint of 11 bytes", lambda data: b"\xff" * 11 + data),
    ],
)
def test_malformed_input_raises(description: str, mutate: Any) -> None:
    data = encode(SAMPLE)
    assert data[FLAG] == 0x01
    assert data[BLOB : BLOB + 2] == b"\x90\x03"  # 200, zig-zagged
    with pytest.raises((ValueError, IndexError, KeyError, OverflowError)):
        decode(mutate(data))


def test_invalid_utf8_in_a_string_raises() -> None:
    value = replace(SAMPLE, name="é")
    data = encode(value)
    corrupt = data.replace("é".encode(), b"\xff\xfe", 1)
    with pytest.raises(UnicodeDecodeError):
        decode(corrupt)


@pytest.mark.parametrize(
    "field_type",
    [
        ["null", "string", "long"],
        ["string", "long"],
        {"type": "fixed", "name": "Hash", "size": 4},
        {"type": "bytes", "logicalType": "decimal", "precision": 4},
        "NoSuchType",
    ],
)
def test_constructs_it_does_not_generate_are_refused(field_type: Any) -> None:
    @dataclass(frozen=True, slots=True)
    class One:
        value: Any

    schema = {"type": "record", "name": "One", "fields": [{"name": "value", "type": field_type}]}
    with pytest.raises(UnsupportedSchemaError):
        compile_record(schema, One)


def test_a_dataclass_that_does_not_match_the_record_is_refused() -> None:
    schema = {**SCHEMA, "fields": list(reversed(SCHEMA["fields"]))}
    with pytest.raises(UnsupportedSchemaError, match="fields differ"):
        compile_record(schema, Outer)


def test_every_current_event_schema_compiles() -> None:
    # The codec falls back to fastavro for a schema that does not compile; this keeps the
    # fast path in use for every event we publish.
    history = load_history()
    for cls in EVENT_TYPES:
        compile_record(history[cls.__name__][-1].schema, cls)
