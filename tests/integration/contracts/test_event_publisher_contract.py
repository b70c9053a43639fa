"""The `EventPublisher` port: the unit tests' `MemoryPublisher` and the worker's real
`KafkaPublisher` (on the local stack's broker) keep one contract; every test runs against
both. What was published is read back as a consumer sees it: from the topic for the real
publisher, from what the fake acknowledged for the fake."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import EventCodec
from schemas.errors import EventEncodingError
from schemas.events import Event, JobStatus, JobStatusChanged
from stream_workers.kafka_io import KafkaPublisher
from stream_workers.ports import EventPublisher
from tests.support.fakes import MemoryPublisher
from tests.support.sample_events import sample_events
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

ReadBack = Callable[[str, int], Awaitable[list[tuple[str, Event]]]]
"""(topic, how many records) -> (key, event) of the first records of the topic, in order."""


@dataclass
class Side:
    publisher: EventPublisher
    read_back: ReadBack
    topic: str


@pytest.fixture(params=["memory", "kafka"])
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    topic = f"contract.events.{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        fake = MemoryPublisher()

        async def from_fake(topic: str, count: int) -> list[tuple[str, Event]]:
            return fake.on(topic)[:count]

        yield Side(fake, from_fake, topic)
        return
    settings: Settings = request.getfixturevalue("fresh_topics")
    topic = settings.topic_status  # four partitions, as in production
    with EventCodec() as codec:
        real = KafkaPublisher(settings.kafka_bootstrap_servers, codec, client_id="contract")
        await real.start()
        try:

            async def from_topic(topic: str, count: int) -> list[tuple[str, Event]]:
                records = await asyncio.to_thread(
                    _consume, settings.kafka_bootstrap_servers, topic, count
                )
                return [(key, codec.decode_any(value)) for key, value in records]

            yield Side(real, from_topic, topic)
        finally:
            await real.close()


def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[str, bytes]]:
    """The first `count` records of `topic`, all partitions, in offset order per partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"contract-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        partitions = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 30
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            records.append(((message.key() or b"").decode(), message.value() or b""))
        return records
    finally:
        consumer.close()


def _status(job_id: str, seq: int, when: datetime) -> JobStatusChanged:
    template = sample_events()[3]
    assert isinstance(template, JobStatusChanged)
    return dataclasses.replace(
        template,
        event_id=str(uuid.uuid4()),
        job_id=job_id,
        seq=seq,
        status=JobStatus.PROCESSING,
        occurred_at=when,
    )


async def test_events_are_read_back_with_their_keys_in_publishing_order(side: Side) -> None:
    job = str(uuid.uuid4())
    when = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
    events = [_status(job, seq, when) for seq in range(5)]
    for event in events:
        await side.publisher.publish(side.topic, job, event)
    assert await side.read_back(side.topic, len(events)) == [(job, event) for event in events]


async def test_every_event_type_survives_the_trip(side: Side) -> None:
    events = sample_events()
    for event in events:
        await side.publisher.publish(side.topic, "one-key", event)
    assert await side.read_back(side.topic, len(events)) == [("one-key", e) for e in events]


async def test_times_are_read_back_to_the_millisecond(side: Side) -> None:
    job = str(uuid.uuid4())
    precise = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
    await side.publisher.publish(side.topic, job, _status(job, 0, precise))
    [(_, event)] = await side.read_back(side.topic, 1)
    assert event.occurred_at == precise.replace(microsecond=535000)


async def test_an_event_that_cannot_be_encoded_is_refused_and_not_published(
    side: Side,
) -> None:
    job = str(uuid.uuid4())
    # deliberately not a valid event: the schema's event_id is a string
    broken = dataclasses.replace(_status(job, 0, datetime.now(UTC)), event_id=None)  # type: ignore[arg-type]
    with pytest.raises(EventEncodingError):
        await side.publisher.publish(side.topic, job, broken)
    marker = _status(job, 1, datetime(2026, 1, 1, tzinfo=UTC))
    await side.publisher.publish(side.topic, job, marker)
    # the marker, published after, is the first record: nothing went out before it
    assert await side.read_back(side.topic, 1) == [(job, marker)]
