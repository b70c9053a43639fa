"""End offsets as the broker's fetch responses report them.

Tansu's ListOffsets answer (behind `get_watermark_offsets` and `list_offsets`) gives a
wrong high watermark on its S3 storage; the high watermark inside a fetch response is
right. So we fetch once from each partition and read librdkafka's cached value.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from whisperstream.kafka_security import KafkaConnection, as_connection

Partition = tuple[str, int]


def high_watermarks(
    kafka: KafkaConnection | str, partitions: Iterable[Partition], timeout: float = 10.0
) -> dict[Partition, int | None]:
    """The high watermark (next offset to be written) of each partition.

    None for a partition that gave no fetch response within ``timeout`` (broker away,
    no such partition): its end is unknown, and 0 would make its lag look like none.
    """
    wanted = set(partitions)
    if not wanted:
        return {}
    consumer = Consumer(
        as_connection(kafka).client_config(
            **{
                "group.id": f"_whisperstream.offsets.{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "max.partition.fetch.bytes": 1024,
            }
        )
    )
    try:
        consumer.assign([TopicPartition(t, p, OFFSET_END) for t, p in wanted])
        fetched: set[Partition] = set()
        deadline = time.monotonic() + timeout
        while fetched != wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                continue
            fetched.add((msg.topic() or "", msg.partition() or 0))
        result: dict[Partition, int | None] = {}
        for topic, partition in wanted:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            known = (topic, partition) in fetched and high >= 0
            result[(topic, partition)] = high if known else None
        return result
    finally:
        consumer.close()
