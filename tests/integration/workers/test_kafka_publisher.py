"""The worker's publisher survives its producer id being fenced (seen after a Tansu restart)."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from ops.kafka.offsets import high_watermarks
from schemas.codec import EventCodec
from stream_workers.kafka_io import KafkaPublisher
from tests.support.sample_events import sample_events
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


def fence(publisher: KafkaPublisher) -> None:
    """What librdkafka reports once the broker has fenced this producer id."""
    publisher._producer._on_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))


async def test_a_fenced_publisher_takes_a_new_producer(fresh_topics: Settings) -> None:
    topic = fresh_topics.topic_control  # one partition
    event = sample_events()[0]
    with EventCodec() as codec:
        publisher = KafkaPublisher(fresh_topics.kafka_bootstrap_servers, codec, client_id="t")
        await publisher.start()
        try:
            await publisher.publish(topic, "job", event)
            fence(publisher)
            await publisher.publish(topic, "job", event)
            await publisher.publish(topic, "job", event)
        finally:
            await publisher.close()
    assert publisher.replacements == 1
    ends = high_watermarks(fresh_topics.kafka_bootstrap_servers, [(topic, 0)])
    assert ends[(topic, 0)] == 3


async def test_a_record_produced_from_a_thread_after_a_fence_is_delivered(
    fresh_topics: Settings,
) -> None:
    # The control reader's thread dead-letters poison cancels with the blocking produce.
    topic = fresh_topics.topic_control
    with EventCodec() as codec:
        value = codec.encode(sample_events()[0])
        publisher = KafkaPublisher(fresh_topics.kafka_bootstrap_servers, codec, client_id="t")
        await publisher.start()
        try:
            fence(publisher)
            await asyncio.to_thread(publisher.produce, topic, "job", value)
        finally:
            await publisher.close()  # flushes what produce queued
    assert publisher.replacements == 1
    ends = high_watermarks(fresh_topics.kafka_bootstrap_servers, [(topic, 0)])
    assert ends[(topic, 0)] == 1
