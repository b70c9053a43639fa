from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from whisperstream.kafka_producer import KafkaProducer, PublishError
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

pytestmark = pytest.mark.integration


def _read_at(settings: Settings, topic: str, partition: int, offset: int) -> tuple[bytes, bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            key, value = msg.key(), msg.value()
            assert key is not None
            assert value is not None
            return key, value
        raise AssertionError("record not readable")
    finally:
        consumer.close()


async def test_send_returns_the_confirmed_position(fresh_topics: Settings) -> None:
    topic = fresh_topics.topic_control
    async with KafkaProducer.from_settings(fresh_topics) as producer:
        first = await producer.send(topic, "job-1", b"one")
        second = await producer.send(topic, "job-1", b"two")
        assert await producer.ping() < 5
    assert first[0] == second[0]  # same key, same partition
    assert second[1] == first[1] + 1
    assert _read_at(fresh_topics, topic, *second) == (b"job-1", b"two")


async def test_unconfirmed_send_raises_publish_error(stack_settings: Settings) -> None:
    producer = KafkaProducer(f"127.0.0.1:{free_port()}", delivery_timeout_s=1.5)
    await producer.start()
    started = time.monotonic()
    try:
        with pytest.raises(PublishError, match="did not confirm"):
            await producer.send("anything", "k", b"v")
        with pytest.raises(PublishError, match="metadata"):
            await producer.ping(timeout_s=0.5)
    finally:
        await producer.close(flush_timeout_s=0.5)
    assert time.monotonic() - started < 10


async def test_send_needs_start() -> None:
    producer = KafkaProducer("127.0.0.1:1")
    with pytest.raises(PublishError, match="not started"):
        await producer.send("t", "k", b"v")


async def test_a_fenced_producer_is_replaced(fresh_topics: Settings) -> None:
    topic = fresh_topics.topic_control
    async with KafkaProducer.from_settings(fresh_topics) as producer:
        await producer.send(topic, "job-1", b"before")
        # what librdkafka reports when the broker fences this producer id (seen on Tansu
        # after a broker restart): the producer never delivers again
        producer._on_error(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
        concurrent = await asyncio.gather(
            *(producer.send(topic, "job-1", f"after-{i}".encode()) for i in range(3))
        )
    assert producer.replacements == 1
    offsets = sorted(offset for _, offset in concurrent)
    assert len(set(offsets)) == 3
    assert _read_at(fresh_topics, topic, concurrent[-1][0], offsets[-1])[0] == b"job-1"
