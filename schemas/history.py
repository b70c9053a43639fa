"""The schema history: every released ``.avsc`` of every event, loaded from the package.

Layout: ``schemas/avro/<EventName>/v<N>.avsc``. Versions start at 1 and have no gaps;
the highest is the current one. Released files never change (see fingerprints.json).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.errors import SchemaHistoryError

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    event: str
    version: int
    schema: Mapping[str, Any]
    """The schema as written in the file (docs and defaults included)."""
    parsed: Any
    """fastavro's parsed form, ready for its readers and writers."""
    canonical_form: str
    fingerprint: bytes
    """CRC-64-AVRO of the canonical form, 8 bytes little-endian as in the single-object header."""


def parse_version(event: str, version: int, schema: Mapping[str, Any]) -> SchemaVersion:
    # A fresh named_schemas per file: versions redefine the same record names.
    parsed = fastavro.parse_schema(dict(schema), named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    fingerprint = bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    return SchemaVersion(event, version, schema, parsed, canonical, fingerprint)


def _avro_root() -> Traversable:
    return resources.files("schemas") / "avro"


def _load_event(folder: Traversable) -> tuple[SchemaVersion, ...]:
    by_number: dict[int, Traversable] = {}
    for entry in folder.iterdir():
        match = _VERSION_FILE.match(entry.name)
        if match is None:
            raise SchemaHistoryError(f"unexpected file {folder.name}/{entry.name}")
        by_number[int(match.group(1))] = entry
    numbers = sorted(by_number)
    if numbers != list(range(1, len(numbers) + 1)):
        raise SchemaHistoryError(f"{folder.name}: versions must be v1..vN without gaps")
    versions = []
    for number in numbers:
        try:
            schema = json.loads(by_number[number].read_text(encoding="utf-8"))
            version = parse_version(folder.name, number, schema)
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaHistoryError(f"{folder.name}/v{number}.avsc: {exc}") from exc
        if schema.get("name") != folder.name:
            raise SchemaHistoryError(f"{folder.name}/v{number}.avsc names {schema.get('name')}")
        versions.append(version)
    return tuple(versions)


def load_history() -> dict[str, tuple[SchemaVersion, ...]]:
    """Every event's released versions, oldest first, keyed by event (record) name."""
    return {
        folder.name: _load_event(folder)
        for folder in sorted(_avro_root().iterdir(), key=lambda entry: entry.name)
        if folder.is_dir() and not folder.name.startswith(("_", "."))
    }
