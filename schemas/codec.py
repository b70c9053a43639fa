"""Encode events to Kafka values and decode values back to events.

Writes Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little-endian,
+ Avro binary body). Reads that for every released schema version, Confluent Schema
Registry framing (``00`` + 4-byte big-endian schema id) when a registry is configured,
and Avro's JSON encoding (a value starting with ``{``). Every decoding failure raises
:class:`UndecodableEvent` carrying the raw value.

Values of the current schema go through readers and writers generated for it
(:mod:`schemas.compiled`, about twice as fast); older versions, registry schemas that
differ from the current one and JSON go through fastavro, which resolves them.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import fastavro
from fastavro.validation import ValidationError

from schemas._convert import FromDict, ToDict, build_from_dict, build_to_dict
from schemas.compiled import CompiledRecord, Read, UnsupportedSchemaError, compile_record
from schemas.errors import (
    EventEncodingError,
    RegistryUnavailableError,
    SchemaHistoryError,
    UndecodableEvent,
)
from schemas.events import EVENT_TYPES, Event
from schemas.history import SchemaVersion, load_history, parse_version

E = TypeVar("E", bound=Event)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_SINGLE_OBJECT_HEADER_LEN = 10
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER_LEN = 5


class WriterSchemaSource(Protocol):
    """Looks up a writer schema (Avro JSON text) by Schema Registry id."""

    def schema_text(self, schema_id: int) -> str | None:
        """The schema's text, or None when the registry has no such id."""
        ...

    def close(self) -> None: ...


class ConfluentSchemaRegistry:
    """:class:`WriterSchemaSource` backed by confluent-kafka's Schema Registry client."""

    def __init__(self, url: str) -> None:
        # Imported here: the registry client pulls in an HTTP stack most processes never use.
        from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

        self._client = SchemaRegistryClient({"url": url})

    def schema_text(self, schema_id: int) -> str | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: PLC0415

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise RegistryUnavailableError(f"schema registry: {exc}") from exc
        except OSError as exc:
            raise RegistryUnavailableError(f"schema registry: {exc}") from exc
        except Exception as exc:
            # The client's HTTP layer raises its own (httpx) error types for network failures.
            raise RegistryUnavailableError(f"schema registry: {exc!r}") from exc
        if schema.schema_type not in (None, "AVRO"):
            raise UndecodableEvent(f"schema id {schema_id} is {schema.schema_type}, not Avro", b"")
        return cast(str, schema.schema_str)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class _EventSpec:
    cls: type[Event]
    current: SchemaVersion
    header: bytes
    to_dict: ToDict
    from_dict: FromDict
    required: frozenset[str]
    fields: frozenset[str]
    compiled: CompiledRecord | None
    """Generated writer and reader of the current schema; None leaves it all to fastavro."""


@dataclass(frozen=True, slots=True)
class _Writer:
    spec: _EventSpec
    parsed: Any
    reader: Any
    """The reader schema to resolve into; None when the writer is the current schema."""
    fast_read: Read | None
    """The generated reader, for values written with the current schema."""


def _writer(spec: _EventSpec, version: SchemaVersion) -> _Writer:
    if version.fingerprint == spec.current.fingerprint:
        fast_read = spec.compiled.read if spec.compiled is not None else None
        return _Writer(spec, version.parsed, None, fast_read)
    return _Writer(spec, version.parsed, spec.current.parsed, None)


class EventCodec:
    """Encoder and decoder for all whisperstream events. Build once; thread-safe for reads.

    ``schema_registry_url`` enables Confluent-framed values; ``registry`` injects any other
    :class:`WriterSchemaSource` (tests). ``history`` replaces the packaged schema history.
    """

    def __init__(
        self,
        schema_registry_url: str | None = None,
        *,
        registry: WriterSchemaSource | None = None,
        history: Mapping[str, tuple[SchemaVersion, ...]] | None = None,
    ) -> None:
        versions = load_history() if history is None else history
        self._specs: dict[type[Any], _EventSpec] = {}
        self._by_name: dict[str, _EventSpec] = {}
        self._by_fingerprint: dict[bytes, _Writer] = {}
        for cls in EVENT_TYPES:
            released = versions.get(cls.__name__)
            if not released:
                raise SchemaHistoryError(f"no schema released for {cls.__name__}")
            spec = _spec_for(cls, released[-1])
            self._specs[cls] = spec
            self._by_name[cls.__name__] = spec
            for version in released:
                if version.fingerprint in self._by_fingerprint:
                    raise SchemaHistoryError(
                        f"{cls.__name__} v{version.version}: fingerprint reused"
                    )
                self._by_fingerprint[version.fingerprint] = _writer(spec, version)
        if registry is None and schema_registry_url:
            registry = ConfluentSchemaRegistry(schema_registry_url)
        self._registry = registry
        self._registry_writers: dict[int, _Writer] = {}

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()

    def __enter__(self) -> EventCodec:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def current_schema(self, event_type: type[Event]) -> SchemaVersion:
        return self._specs[event_type].current

    # -- encoding ---------------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        spec = self._spec_of(event)
        try:
            if spec.compiled is not None:
                buffer = bytearray(spec.header)
                spec.compiled.write(event, buffer)
                return bytes(buffer)
            out = io.BytesIO()
            out.write(spec.header)
            fastavro.schemaless_writer(out, spec.current.parsed, spec.to_dict(event))
            return out.getvalue()
        except _ENCODING_ERRORS as exc:
            raise EventEncodingError(f"cannot encode {type(event).__name__}: {exc}") from exc

    def encode_json(self, event: Event) -> bytes:
        """Avro JSON encoding (unions as ``{"type": value}``), e.g. for kcat and fixtures."""
        spec = self._spec_of(event)
        out = io.StringIO()
        try:
            # Unlike the binary writer, the JSON writer checks no types unless asked to.
            fastavro.json_writer(out, spec.current.parsed, [spec.to_dict(event)], validator=True)
        except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:
            raise EventEncodingError(f"cannot encode {type(event).__name__}: {exc}") from exc
        return out.getvalue().strip().encode("utf-8")

    def _spec_of(self, event: Event) -> _EventSpec:
        try:
            return self._specs[type(event)]
        except KeyError:
            raise EventEncodingError(f"not an event type: {type(event).__name__}") from None

    # -- decoding ---------------------------------------------------------------------

    def decode(self, value: bytes, expected: type[E]) -> E:
        """Decode ``value``; raise :class:`UndecodableEvent` unless it is an ``expected``."""
        event = self._decode(value, self._specs[expected])
        return cast(E, event)

    def decode_any(self, value: bytes) -> Event:
        return self._decode(value, None)

    def _decode(self, value: bytes, expected: _EventSpec | None) -> Event:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise UndecodableEvent(f"value is {type(value).__name__}, not bytes", b"")
        raw = bytes(value)
        if raw[:2] == SINGLE_OBJECT_MAGIC:
            writer = self._by_fingerprint.get(raw[2:_SINGLE_OBJECT_HEADER_LEN])
            if writer is None:
                if len(raw) < _SINGLE_OBJECT_HEADER_LEN:
                    raise UndecodableEvent("truncated single-object header", raw)
                raise UndecodableEvent(
                    f"unknown schema fingerprint {raw[2:_SINGLE_OBJECT_HEADER_LEN].hex()}", raw
                )
            return self._read_binary(raw, _SINGLE_OBJECT_HEADER_LEN, writer, expected)
        if raw[:1] == bytes([_CONFLUENT_MAGIC]):
            writer = self._registry_writer(raw)
            return self._read_binary(raw, _CONFLUENT_HEADER_LEN, writer, expected)
        if raw.lstrip()[:1] == b"{":
            return self._read_json(raw, expected)
        raise UndecodableEvent("not single-object Avro, Confluent-framed Avro or Avro JSON", raw)

    def _read_binary(
        self, raw: bytes, start: int, writer: _Writer, expected: _EventSpec | None
    ) -> Event:
        spec = writer.spec
        if expected is not None and spec is not expected:
            raise UndecodableEvent(
                f"expected {expected.cls.__name__}, got {spec.cls.__name__}", raw
            )
        try:
            if writer.fast_read is not None:
                event, end = writer.fast_read(raw, start)
            else:
                body = io.BytesIO(raw)
                body.seek(start)
                record = fastavro.schemaless_reader(body, writer.parsed, writer.reader)
                event = spec.from_dict(cast(dict[str, Any], record))
                end = body.tell()
        except Exception as exc:
            # A poison message can make the Avro reader fail in many ways (EOF, bad
            # lengths, invalid UTF-8, unresolvable unions); all mean "undecodable".
            raise UndecodableEvent(
                f"invalid {spec.cls.__name__} body: {type(exc).__name__}: {exc}", raw
            ) from exc
        if end != len(raw):
            raise UndecodableEvent(
                f"{len(raw) - end} trailing bytes after a {spec.cls.__name__}", raw
            )
        return cast(Event, event)

    def _registry_writer(self, raw: bytes) -> _Writer:
        if self._registry is None:
            raise UndecodableEvent("Confluent-framed value but no schema registry configured", raw)
        if len(raw) < _CONFLUENT_HEADER_LEN:
            raise UndecodableEvent("truncated Confluent header", raw)
        schema_id = int.from_bytes(raw[1:_CONFLUENT_HEADER_LEN], "big")
        writer = self._registry_writers.get(schema_id)
        if writer is not None:
            return writer
        try:
            text = self._registry.schema_text(schema_id)
        except UndecodableEvent as exc:
            raise UndecodableEvent(exc.reason, raw) from exc
        if text is None:
            raise UndecodableEvent(f"schema id {schema_id} not in the registry", raw)
        try:
            schema = json.loads(text)
            name = str(schema["name"]).rsplit(".", 1)[-1]
            spec = self._by_name[name]
            version = parse_version(name, 0, schema)
        except Exception as exc:
            raise UndecodableEvent(
                f"schema id {schema_id} is not a whisperstream event schema: {exc!r}", raw
            ) from exc
        writer = _writer(spec, version)
        self._registry_writers[schema_id] = writer
        return writer

    def _read_json(self, raw: bytes, expected: _EventSpec | None) -> Event:
        try:
            document = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise UndecodableEvent(f"invalid JSON: {exc}", raw) from exc
        if not isinstance(document, dict):
            raise UndecodableEvent("JSON value is not an object", raw)
        spec = expected if expected is not None else self._json_event(document, raw)
        keys = document.keys()
        if not spec.required <= keys or not keys <= spec.fields:
            missing = sorted(spec.required - keys)
            unknown = sorted(keys - spec.fields)
            raise UndecodableEvent(
                f"JSON is not a {spec.cls.__name__}: missing {missing}, unknown {unknown}", raw
            )
        # fastavro's JSON decoder reads one record per line: re-serialise on a single line.
        line = io.StringIO(json.dumps(document))
        try:
            record = next(iter(fastavro.json_reader(line, spec.current.parsed)))
            event = spec.from_dict(cast(dict[str, Any], record))
        except Exception as exc:
            # fastavro's JSON decoder reports type mismatches as assorted built-in errors.
            raise UndecodableEvent(
                f"invalid {spec.cls.__name__} JSON: {type(exc).__name__}: {exc}", raw
            ) from exc
        return cast(Event, event)

    def _json_event(self, document: dict[str, Any], raw: bytes) -> _EventSpec:
        keys = document.keys()
        matches = [s for s in self._specs.values() if s.required <= keys <= s.fields]
        if len(matches) != 1:
            names = sorted(s.cls.__name__ for s in matches)
            raise UndecodableEvent(f"JSON fields match {names or 'no event'}", raw)
        return matches[0]


_ENCODING_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error)


def _compiled(cls: type[Event], current: SchemaVersion) -> CompiledRecord | None:
    try:
        return compile_record(current.schema, cls)
    except UnsupportedSchemaError:
        return None


def _spec_for(cls: type[Event], current: SchemaVersion) -> _EventSpec:
    fields = current.schema["fields"]
    return _EventSpec(
        cls=cls,
        current=current,
        header=SINGLE_OBJECT_MAGIC + current.fingerprint,
        to_dict=build_to_dict(cls),
        from_dict=build_from_dict(cls),
        required=frozenset(f["name"] for f in fields if "default" not in f),
        fields=frozenset(f["name"] for f in fields),
        compiled=_compiled(cls, current),
    )
