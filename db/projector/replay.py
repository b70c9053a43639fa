"""``whisperstream replay --from-time | --from-offsets``: move the projector's stored
next offsets back (or forward), so its next run folds from there.

Moving back is safe: the fold turns events it has already seen into no-ops.  The
projector must be stopped, or it would write its own positions over these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from confluent_kafka import Consumer

from db.errors import InvalidOffsetsError
from db.projector.config import ProjectorConfig
from db.projector.decoding import record_time
from db.projector.reader import EndReader, Position, list_partitions

EARLIEST = "earliest"


def parse_offsets(spec: str, partitions: list[Position]) -> dict[Position, int]:
    """``earliest`` (every partition from 0), or ``TOPIC:PARTITION=OFFSET,...``.

    Partitions not named keep their stored offsets.
    """
    if spec.strip() == EARLIEST:
        return dict.fromkeys(partitions, 0)
    known = set(partitions)
    offsets: dict[Position, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        where, equals, offset = item.rpartition("=")
        topic, colon, partition = where.rpartition(":")
        if not (equals and colon and topic and partition.isdigit() and offset.isdigit()):
            raise InvalidOffsetsError(
                f"{item!r}: expected TOPIC:PARTITION=OFFSET (or the word {EARLIEST!r})"
            )
        position = (topic, int(partition))
        if position not in known:
            raise InvalidOffsetsError(f"{topic}:{partition} is not a projected partition")
        offsets[position] = int(offset)
    if not offsets:
        raise InvalidOffsetsError("no offsets given")
    return offsets


def projected_partitions(config: ProjectorConfig) -> list[Position]:
    consumer = Consumer(config.consumer_config())
    try:
        return list_partitions(consumer, config.topics)
    finally:
        consumer.close()


async def offsets_at_time(config: ProjectorConfig, when: datetime) -> dict[Position, int]:
    """The first offset of each partition whose record time is ``when`` or later (its end
    when there is none).

    Found by reading the partitions, because Tansu 0.6 answers ListOffsets by timestamp
    (``offsets_for_times``) with the earliest offset whatever the time.
    """
    found: dict[Position, int] = {}
    reader = EndReader(config)
    async for messages in reader.batches():
        for message in messages:
            position = (message.topic() or "", message.partition() or 0)
            if position not in found and record_time(message) >= when:
                found[position] = message.offset() or 0
    return {p: found.get(p, reader.ends.get(p, 0)) for p in reader.partitions}


def describe(offsets: Mapping[Position, int]) -> list[str]:
    return [f"{t}:{p}={o}" for (t, p), o in sorted(offsets.items())]
