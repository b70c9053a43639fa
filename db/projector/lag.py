"""Lag per partition from the fetch responses' high watermarks.

``Consumer.get_watermark_offsets(tp, cached=True)`` returns librdkafka's cached high
watermark, which every fetch response for the partition updates.  The uncached form
sends a ListOffsets request, which Tansu 0.6 answers with a wrong high watermark
(docs/architecture.md), so it is never used here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import projector_lag_table


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    next_offset: int
    """The next offset the projector will fold in (its position)."""
    high_watermark: int

    @property
    def lag(self) -> int:
        return max(self.high_watermark - self.next_offset, 0)


class WatermarkSource(Protocol):
    """The parts of ``confluent_kafka.Consumer`` that lag is measured with."""

    def assignment(self) -> list[TopicPartition]: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...


def measure_lag(consumer: WatermarkSource) -> list[PartitionLag]:
    """Lag of every assigned partition that has had a fetch response and a position.

    Call it from the thread that polls the consumer, after the batch was taken out.
    """
    assigned = consumer.assignment()
    if not assigned:
        return []
    lags = []
    for tp in consumer.position(assigned):
        watermarks = consumer.get_watermark_offsets(
            TopicPartition(tp.topic, tp.partition), cached=True
        )
        if watermarks is None:
            continue
        _low, high = watermarks
        if high < 0 or tp.offset < 0:  # nothing fetched yet: unknown, not zero
            continue
        lags.append(PartitionLag(tp.topic, tp.partition, tp.offset, high))
    return sorted(lags, key=lambda lag: (lag.topic, lag.partition))


class LagMetrics:
    """Prometheus gauges of the projector; registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lag = Gauge(
            "whisperstream_projector_lag",
            "Records behind the fetch response's high watermark, per partition",
            ["topic", "partition"],
            registry=registry,
        )
        self._events = Gauge(
            "whisperstream_projector_events_applied",
            "Records folded into Postgres since the projector started",
            registry=registry,
        )

    def observe(self, lags: Iterable[PartitionLag]) -> None:
        for lag in lags:
            self._lag.labels(lag.topic, str(lag.partition)).set(lag.lag)

    def applied(self, count: int) -> None:
        self._events.inc(count)


async def write_lag(
    connection: AsyncConnection, consumer_group: str, lags: Sequence[PartitionLag]
) -> None:
    """Upsert the lag rows of ``consumer_group`` (in the caller's transaction)."""
    if not lags:
        return
    table = projector_lag_table
    stmt = pg_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.consumer_group, table.c.topic, table.c.partition],
        set_={
            "next_offset": stmt.excluded.next_offset,
            "high_watermark": stmt.excluded.high_watermark,
            "lag": stmt.excluded.lag,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    await connection.execute(
        stmt.values(
            [
                {
                    "consumer_group": consumer_group,
                    "topic": lag.topic,
                    "partition": lag.partition,
                    "next_offset": lag.next_offset,
                    "high_watermark": lag.high_watermark,
                    "lag": lag.lag,
                    "updated_at": func.now(),
                }
                for lag in lags
            ]
        )
    )
