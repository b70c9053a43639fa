"""In-memory fakes of the projector's Kafka ports, for unit tests.

`tests/integration/contracts/test_projector_kafka_contract.py` checks them against the
real confluent-kafka message and consumer on the local stack's broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition


@dataclass
class FakeMessage:
    """`db.projector.decoding.KafkaMessage` (the real one: `confluent_kafka.Message`)."""

    value_: bytes | None
    key_: bytes | None = b"k"
    ts: tuple[int, int] = (TIMESTAMP_CREATE_TIME, 1_735_689_600_000)
    """(timestamp type, milliseconds since the epoch), as `Message.timestamp()` gives."""
    topic_: str = "t.status"
    partition_: int = 2
    offset_: int = 17

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def timestamp(self) -> tuple[int, int]:
        return self.ts

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_


@dataclass
class FakeConsumer:
    """`db.projector.lag.WatermarkSource` (the real one: `confluent_kafka.Consumer`).

    `positions` are the next offsets the application will read and `highs` the high
    watermarks of the latest fetch responses, per assigned (topic, partition); -1001
    (`OFFSET_INVALID`) in either means nothing fetched yet, as the real consumer says.
    """

    positions: dict[tuple[str, int], int]
    highs: dict[tuple[str, int], int]
    cached_calls: list[bool] = field(default_factory=list)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)])
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = 0, cached: bool = False
    ) -> tuple[int, int] | None:
        self.cached_calls.append(cached)
        high = self.highs[(partition.topic, partition.partition)]
        return (0 if high >= 0 else high), high
