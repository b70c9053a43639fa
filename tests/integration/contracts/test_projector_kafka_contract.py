"""The projector's Kafka ports, `KafkaMessage` and `WatermarkSource`: the unit tests'
`FakeMessage` and `FakeConsumer` and the real confluent-kafka message and consumer (on the
local stack's broker) keep one contract.

Each scenario is set up on both sides, the fake configured as the unit tests configure
it and the real one by producing and consuming records; what the projector makes of
them (`to_record`, `measure_lag`) must be the same.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from db.projector.decoding import KafkaMessage, to_record
from db.projector.lag import PartitionLag, WatermarkSource, measure_lag
from db.records import ProjectionRecord, Undecodable
from schemas.codec import EventCodec
from tests.support.kafka_fakes import FakeConsumer, FakeMessage
from tests.support.sample_events import sample_events
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

WHEN_MS = 1_773_500_966_535  # 2026-03-14 15:09:26.535 UTC


class Broker:
    """A fresh one-partition topic on the local stack's broker, and clients of it."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topic = f"contract.projector.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(self.topic, 1, 1)]).values():
            future.result(30)
        self._consumers: list[Consumer] = []

    def produce(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        for key, value in records:
            producer.produce(self.topic, key=key, value=value, timestamp=WHEN_MS, partition=0)
        assert producer.flush(30) == 0, "records left unsent"

    def consumer(self) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"contract-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self._consumers.append(consumer)
        return consumer

    def take(self, consumer: Consumer, count: int) -> list[Message]:
        """Assign the partition from its start and take `count` records out."""
        consumer.assign([TopicPartition(self.topic, 0, 0)])
        taken: list[Message] = []
        deadline = time.monotonic() + 30
        while len(taken) < count:
            assert time.monotonic() < deadline, f"took {len(taken)} of {count} records"
            for message in consumer.consume(count - len(taken), 0.5):
                error = message.error()
                if error is None:
                    taken.append(message)
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
        return taken

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()


@pytest.fixture
def broker(stack_settings: Settings) -> Iterator[Broker]:
    broker = Broker(stack_settings.kafka_bootstrap_servers)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def codec() -> Iterator[EventCodec]:
    with EventCodec() as codec:
        yield codec


# -- KafkaMessage -------------------------------------------------------------------------

MessageSide = Callable[[Broker, bytes | None, bytes | None], KafkaMessage]
"""(broker, key, value) -> the message the projector gets for that record at offset 0."""


def _fake_message(broker: Broker, key: bytes | None, value: bytes | None) -> KafkaMessage:
    return FakeMessage(value, key, (TIMESTAMP_CREATE_TIME, WHEN_MS), broker.topic, 0, 0)


def _real_message(broker: Broker, key: bytes | None, value: bytes | None) -> KafkaMessage:
    broker.produce([(key, value)])
    [message] = broker.take(broker.consumer(), 1)
    return message


@pytest.fixture(params=[_fake_message, _real_message], ids=["fake", "kafka"])
def message_for(request: pytest.FixtureRequest) -> MessageSide:
    side: MessageSide = request.param
    return side


def test_a_record_becomes_the_event_with_its_position_time_and_key(
    message_for: MessageSide, broker: Broker, codec: EventCodec
) -> None:
    event = sample_events()[2]
    record = to_record(message_for(broker, b"job-1", codec.encode(event)), codec)
    when = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
    assert record == ProjectionRecord(broker.topic, 0, 0, when, b"job-1", event)


def test_a_tombstone_without_a_key_is_kept_as_undecodable(
    message_for: MessageSide, broker: Broker, codec: EventCodec
) -> None:
    record = to_record(message_for(broker, None, None), codec)
    assert record.key is None
    assert isinstance(record.payload, Undecodable)
    assert (record.payload.raw, record.payload.error_type) == (None, "EmptyValue")


def test_garbage_is_kept_as_undecodable_with_its_bytes(
    message_for: MessageSide, broker: Broker, codec: EventCodec
) -> None:
    record = to_record(message_for(broker, b"k", b"\xc3\x01garbage"), codec)
    assert isinstance(record.payload, Undecodable)
    assert record.payload.raw == b"\xc3\x01garbage"


# -- WatermarkSource ----------------------------------------------------------------------

ConsumerSide = Callable[[Broker, int, int | None], WatermarkSource]
"""(broker, records in the partition, records taken out or None for "assigned, nothing
fetched yet") -> a consumer in that state."""


def _fake_consumer(broker: Broker, stored: int, taken: int | None) -> WatermarkSource:
    position = OFFSET_INVALID if taken is None else taken
    high = OFFSET_INVALID if taken is None else stored
    return FakeConsumer({(broker.topic, 0): position}, {(broker.topic, 0): high})


def _real_consumer(broker: Broker, stored: int, taken: int | None) -> WatermarkSource:
    broker.produce([(b"k", b"v%d" % n) for n in range(stored)])
    consumer = broker.consumer()
    if taken is None:
        consumer.assign([TopicPartition(broker.topic, 0, 0)])
    else:
        broker.take(consumer, taken)
    return consumer


@pytest.fixture(params=[_fake_consumer, _real_consumer], ids=["fake", "kafka"])
def consumer_for(request: pytest.FixtureRequest) -> ConsumerSide:
    side: ConsumerSide = request.param
    return side


@pytest.mark.parametrize(("stored", "taken"), [(10, 4), (10, 10), (3, 1)])
def test_lag_is_what_the_partition_holds_past_what_was_taken(
    consumer_for: ConsumerSide, broker: Broker, stored: int, taken: int
) -> None:
    lags = measure_lag(consumer_for(broker, stored, taken))
    assert lags == [PartitionLag(broker.topic, 0, taken, stored)]
    assert lags[0].lag == stored - taken


def test_a_partition_assigned_but_not_fetched_yet_has_no_lag_reported(
    consumer_for: ConsumerSide, broker: Broker
) -> None:
    assert measure_lag(consumer_for(broker, 5, None)) == []


def test_nothing_assigned_is_no_lag(broker: Broker) -> None:
    # both sides: a consumer with no assignment at all
    sides: list[Any] = [FakeConsumer({}, {}), broker.consumer()]
    for consumer in sides:
        assert measure_lag(consumer) == []
