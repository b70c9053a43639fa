"""Read the projected topics from chosen offsets up to their current end (or up to
chosen offsets).

The end is where each partition reports EOF, which librdkafka derives from the fetch
responses' high watermarks (ListOffsets is wrong on Tansu, see ``lag.py``).  The reader
uses ``assign``, not ``subscribe``: it never joins or commits for the projector's group.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from db.projector.config import ProjectorConfig

Position = tuple[str, int]

METADATA_TIMEOUT_S = 15.0


def list_partitions(consumer: Consumer, topics: tuple[str, ...]) -> list[Position]:
    positions: list[Position] = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise KafkaException(f"topic {topic!r} does not exist or has no partitions")
        positions.extend((topic, partition) for partition in sorted(metadata.partitions))
    return positions


class EndReader:
    """Batches of records from ``start`` (default: the beginning) to each partition's end.

    With ``until``, only the partitions it names are read, each until a record at or past
    its offset there has been yielded (or its end, if that comes first); the batch that
    reaches it may hold later records too.  ``ends`` holds, once iteration is over, the
    offset each partition that reported its end ended at.
    """

    def __init__(
        self,
        config: ProjectorConfig,
        start: Mapping[Position, int] | None = None,
        *,
        until: Mapping[Position, int] | None = None,
    ):
        self._config = config
        self._start = dict(start or {})
        self._until = None if until is None else dict(until)
        self.ends: dict[Position, int] = {}
        self.partitions: list[Position] = []
        self._reading: list[Position] = []

    async def batches(self) -> AsyncIterator[list[Message]]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="projector-reader") as executor:
            consumer = await loop.run_in_executor(executor, self._open)
            try:
                pending = set(self._reading)
                while pending:
                    messages = await loop.run_in_executor(executor, self._consume, consumer)
                    records = []
                    for message in messages:
                        error = message.error()
                        if error is None:
                            records.append(message)
                            if self._reached(message):
                                pending.discard((message.topic() or "", message.partition() or 0))
                        elif error.code() == KafkaError._PARTITION_EOF:
                            position = (message.topic() or "", message.partition() or 0)
                            self.ends[position] = message.offset() or 0
                            pending.discard(position)
                        elif error.fatal():
                            raise KafkaException(error)
                    if records:
                        yield records
            finally:
                await loop.run_in_executor(executor, consumer.close)

    def _open(self) -> Consumer:
        consumer = Consumer(
            self._config.consumer_config(
                **{
                    "group.id": f"{self._config.group_id}.reader-{uuid.uuid4().hex[:8]}",
                    "enable.partition.eof": True,
                }
            )
        )
        try:
            self.partitions = list_partitions(consumer, self._config.topics)
            start = self._start
            self._reading = [
                position
                for position in self.partitions
                if self._until is None or self._until.get(position, 0) > start.get(position, 0)
            ]
            consumer.assign(
                [
                    TopicPartition(topic, part, start.get((topic, part), OFFSET_BEGINNING))
                    for topic, part in self._reading
                ]
            )
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _reached(self, message: Message) -> bool:
        if self._until is None:
            return False
        position = (message.topic() or "", message.partition() or 0)
        return (message.offset() or 0) + 1 >= self._until.get(position, 0)

    def _consume(self, consumer: Consumer) -> list[Message]:
        return consumer.consume(self._config.batch_max_events, self._config.batch_max_ms / 1000)
