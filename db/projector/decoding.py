"""Kafka messages to :class:`ProjectionRecord`: a value that does not decode is kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from db.records import ProjectionRecord, Undecodable
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import Event

EPOCH = datetime.fromtimestamp(0, tz=UTC)


class KafkaMessage(Protocol):
    """The parts of ``confluent_kafka.Message`` the projector reads (fakes in tests)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...


def record_time(message: KafkaMessage) -> datetime:
    """The record's Kafka timestamp; the epoch when the broker gives none, so that a
    replay still writes the same rows."""
    kind, millis = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0:
        return EPOCH
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def decode_payload(raw: bytes | None, codec: EventCodec) -> Event | Undecodable:
    """The event in ``raw``, or what went wrong with it.  ``RegistryUnavailableError``
    propagates: it is not the message's fault, so the caller retries instead."""
    if raw is None:
        return Undecodable(None, "EmptyValue", "the record has no value (a tombstone)")
    try:
        return codec.decode_any(raw)
    except UndecodableEvent as exc:
        return Undecodable(exc.raw or raw, type(exc).__name__, exc.reason)


def to_record(message: KafkaMessage, codec: EventCodec) -> ProjectionRecord:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a Kafka message without topic, partition or offset")
    return ProjectionRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=record_time(message),
        key=_as_bytes(message.key()),
        payload=decode_payload(_as_bytes(message.value()), codec),
    )
