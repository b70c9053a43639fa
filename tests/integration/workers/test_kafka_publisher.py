"""The worker's publisher survives its producer id being fenced (seen after a Tansu restart)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from ops.kafka.offsets import high_watermarks
from schemas.codec import EventCodec
from stream_workers.kafka_io import KafkaPublisher
from tests.support.sample_events import sample_events
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_fenced_publisher_takes_a_new_producer(fresh_topics: Settings) -> None:
    topic = fresh_topics.topic_control  # one partition
    event = sample_events()[0]
    with EventCodec() as codec:
        publisher = KafkaPublisher(fresh_topics.kafka_bootstrap_servers, codec, client_id="t")
        try:
            await publisher.publish(topic, "job", event)
            publisher._on_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
            await publisher.publish(topic, "job", event)
            await publisher.publish(topic, "job", event)
        finally:
            publisher.close()
    assert publisher.replacements == 1
    ends = high_watermarks(fresh_topics.kafka_bootstrap_servers, [(topic, 0)])
    assert ends[(topic, 0)] == 3
