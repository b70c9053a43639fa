"""Read a topic and turn each record into one JSON document, decodable or not."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from ops.kafka.offsets import Partition, high_watermarks
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.plain import to_plain
from whisperstream.kafka_security import KafkaConnection
from whisperstream.settings import Settings

# short names operators can type instead of full topic names
TOPIC_ALIASES = {
    "high": "topic_requests_high",
    "normal": "topic_requests_normal",
    "retry": "topic_requests_retry",
    "control": "topic_control",
    "status": "topic_status",
    "dlq": "topic_dlq",
    "workers": "topic_workers",
}


def resolve_topic(settings: Settings, name: str) -> str:
    field = TOPIC_ALIASES.get(name)
    return str(getattr(settings, field)) if field else name


def record_document(msg: Message, codec: EventCodec) -> dict[str, Any]:
    raw = msg.value() or b""
    key = msg.key()
    _, timestamp_ms = msg.timestamp()
    document: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp_ms": timestamp_ms,
        "key": key.decode("utf-8", errors="replace") if key is not None else None,
    }
    try:
        event = codec.decode_any(raw)
    except UndecodableEvent as exc:
        document["undecodable"] = True
        document["error"] = exc.reason
        document["raw_base64"] = base64.b64encode(raw).decode("ascii")
        return document
    document["type"] = type(event).__name__
    document["event"] = to_plain(event)
    return document


class UnknownEndOffsetError(RuntimeError):
    """A partition's end offset could not be read, so "from now on" has no start."""


def start_offsets(
    ends: Mapping[Partition, int | None], topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Where a tail "from now on" starts in each partition: at its end offset."""
    starts: dict[int, int] = {}
    unknown: list[str] = []
    for partition in partitions:
        end = ends.get((topic, partition))
        if end is None:
            unknown.append(f"{topic}[{partition}]")
        else:
            starts[partition] = end
    if unknown:
        # starting at 0 instead would print the partition's whole history
        raise UnknownEndOffsetError(
            f"end offset unknown for {', '.join(unknown)} (no fetch response in time); "
            "try again, or use --from-beginning"
        )
    return starts


def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    max_records: int | None,
    idle_timeout: float | None,
) -> Iterator[dict[str, Any]]:
    """Yield records of every partition of `topic`, from the start or from now on.

    Stops after `max_records`, or after `idle_timeout` seconds without a record.
    """
    kafka = KafkaConnection.from_settings(settings)
    metadata = AdminClient(kafka.client_config()).list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    if from_beginning:
        starts = dict.fromkeys(partitions, 0)
    else:
        ends = high_watermarks(kafka, [(topic, p) for p in partitions])
        starts = start_offsets(ends, topic, partitions)
    consumer = Consumer(
        kafka.client_config(
            **{"group.id": f"_whisperstream.tail.{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
    )
    seen = 0
    try:
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        with EventCodec(settings.schema_registry_url) as codec:
            last_record = time.monotonic()
            while max_records is None or seen < max_records:
                msg = consumer.poll(0.5)
                if msg is None or _is_eof(msg):
                    if idle_timeout is not None and time.monotonic() - last_record > idle_timeout:
                        return
                    continue
                last_record = time.monotonic()
                seen += 1
                yield record_document(msg, codec)
    finally:
        consumer.close()


def _is_eof(msg: Message) -> bool:
    error = msg.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF
