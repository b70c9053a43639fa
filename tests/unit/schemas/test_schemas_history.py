"""The .avsc files, the fingerprint table and the dataclasses agree with each other."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

import pytest

from schemas import fingerprints
from schemas.events import EVENT_TYPES, utc_now
from schemas.history import SchemaVersion, load_history

NAMESPACE = "io.whisperstream.events"
HISTORY = load_history()
ALL_VERSIONS = [v for versions in HISTORY.values() for v in versions]


def _id(version: SchemaVersion) -> str:
    return f"{version.event}-v{version.version}"


def _named_types(schema: Any) -> Iterator[Mapping[str, Any]]:
    """Every record and enum definition inside ``schema``."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _named_types(branch)
    elif isinstance(schema, Mapping):
        if schema.get("type") in ("record", "enum"):
            yield schema
        for field in schema.get("fields", ()):
            yield from _named_types(field["type"])
        if "items" in schema:
            yield from _named_types(schema["items"])


def test_fingerprint_table_matches_the_released_files() -> None:
    # Fails when a released .avsc changed or a new version was added without
    # `python -m schemas.fingerprints --write`.
    assert fingerprints.checked_in_table() == fingerprints.computed_table()
    assert fingerprints.main([]) == 0


def test_every_event_has_a_released_schema() -> None:
    assert sorted(HISTORY) == sorted(cls.__name__ for cls in EVENT_TYPES)


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=_id)
def test_schema_style(version: SchemaVersion) -> None:
    assert version.schema["namespace"] == NAMESPACE
    for named in _named_types(version.schema):
        assert named.get("doc"), f"{named['name']} has no doc"
        if named["type"] == "enum":
            assert named.get("default") in named["symbols"], f"{named['name']} needs a default"
        for field in named.get("fields", ()):
            assert field.get("doc"), f"{named['name']}.{field['name']} has no doc"
            if isinstance(field["type"], list):
                assert field["type"][0] == "null", f"{field['name']}: null goes first"
                assert "default" in field
                assert field["default"] is None, f"{field['name']}: nullable defaults to null"


def _check_record(cls: type[Any], schema: Mapping[str, Any]) -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert names == [f["name"] for f in schema["fields"]], cls.__name__
    for field in schema["fields"]:
        hint = hints[field["name"]]
        avro_type = field["type"]
        nullable = isinstance(avro_type, list)
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
        assert nullable == (type(None) in args), f"{cls.__name__}.{field['name']}"
        if nullable:
            avro_type = avro_type[1]
            hint = next(a for a in args if a is not type(None))
        if isinstance(avro_type, Mapping) and avro_type["type"] == "record":
            _check_record(hint, avro_type)
        if isinstance(avro_type, Mapping) and avro_type["type"] == "enum":
            assert issubclass(hint, StrEnum)
            assert [m.value for m in hint] == avro_type["symbols"]


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_dataclass_matches_current_schema(cls: type[Any]) -> None:
    _check_record(cls, HISTORY[cls.__name__][-1].schema)


def test_dead_letter_embeds_the_current_request_schema() -> None:
    # Releasing a new TranscriptionRequested needs a new DeadLetter version as well.
    dead_letter = HISTORY["DeadLetter"][-1].schema
    embedded = next(f for f in dead_letter["fields"] if f["name"] == "request")["type"][1]
    assert embedded == HISTORY["TranscriptionRequested"][-1].schema


def test_utc_now_has_millisecond_precision() -> None:
    assert utc_now().microsecond % 1000 == 0
    assert utc_now().utcoffset() is not None
