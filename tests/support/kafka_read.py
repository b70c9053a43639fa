"""Read a topic from its start to its end as of now, for tests that count records.

Reading "until nothing came for a while" says nothing on a slow machine: a test that
expects no records would pass before the first fetch. This reads every partition up to
the high watermark a fetch response reports, so an empty result means an empty topic.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ops.kafka.offsets import high_watermarks


def records_to_end(
    bootstrap: str, topic: str, timeout: float = 30.0
) -> list[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of every record of `topic` up to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"_tests.read.{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = high_watermarks(bootstrap, [(topic, p) for p in partitions])
        unknown = [p for (_, p), end in ends.items() if end is None]
        assert not unknown, f"no end offset for {topic} partitions {unknown}"
        wanted = {p: end for (_, p), end in ends.items() if end}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        position = dict.fromkeys(wanted, 0)
        found: list[tuple[int, int, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while any(position[p] < end for p, end in wanted.items()):
            assert time.monotonic() < deadline, f"read {position} of {wanted} in {topic}"
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            partition, offset = message.partition() or 0, message.offset() or 0
            position[partition] = offset + 1
            found.append((partition, offset, message.value()))
        return found
    finally:
        consumer.close()


def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """`group`'s committed offset on one partition (negative: nothing committed)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (position,) = reader.committed([TopicPartition(topic, partition)], 10)
        return int(position.offset)
    finally:
        reader.close()
