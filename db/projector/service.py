"""The projector loop: consume a batch, fold it into Postgres, then commit to Kafka.

Threading: confluent-kafka's consumer blocks, so every call on it runs on one dedicated
executor thread (``run_in_executor``), which is also the thread its rebalance callbacks
fire on.  The asyncio loop owns the database.  ``on_assign`` needs the stored offsets from
Postgres: it hands a coroutine to the loop (which is idle, awaiting that very consume
call) and waits for it.

Exactly-once effect: ``apply_batch`` moves ``projector_offsets`` in the same transaction
as the rows, and skips records below them.  On assignment each partition is sought to
its stored next offset, so Kafka's committed offsets are only a courtesy for tools; a
lost or failed Kafka commit costs at most a redelivery that changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from db.projection_store import apply_batch_in
from db.projector.config import ProjectorConfig
from db.projector.decoding import to_record
from db.projector.lag import LagMetrics, PartitionLag, measure_lag, write_lag
from db.projector.offsets import load_next_offsets
from db.projector.retry import database_retrying
from db.records import BatchOutcome, ProjectionRecord
from schemas.codec import EventCodec
from whisperstream.heartbeat_file import HeartbeatFile
from whisperstream.logs import activity_logger

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

LAG_REFRESH_S = 5.0
"""Lag rows are rewritten at least this often while idle, so their age shows liveness."""


@dataclass
class ProjectorStats:
    batches: int = 0
    applied: int = 0
    skipped: int = 0
    errors_written: int = 0
    assignments: list[list[tuple[str, int, int]]] = field(default_factory=list)
    """Each assignment: (topic, partition, offset sought to)."""


@dataclass(frozen=True, slots=True)
class _Batch:
    records: list[ProjectionRecord]
    lags: list[PartitionLag]


def next_offsets(records: Sequence[ProjectionRecord]) -> dict[tuple[str, int], int]:
    """The offset after the last record of each partition in ``records``."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        position = (record.topic, record.partition)
        offsets[position] = max(offsets.get(position, 0), record.offset + 1)
    return offsets


class Projector:
    """One member of the projector's consumer group."""

    def __init__(
        self,
        config: ProjectorConfig,
        engine: AsyncEngine,
        codec: EventCodec,
        *,
        metrics: LagMetrics | None = None,
        lag_refresh_s: float = LAG_REFRESH_S,
        heartbeat: HeartbeatFile | None = None,
    ) -> None:
        self.config = config
        self.stats = ProjectorStats()
        self._engine = engine
        self._codec = codec
        self._metrics = metrics
        self._lag_refresh_s = lag_refresh_s
        self._heartbeat = heartbeat or HeartbeatFile(None)
        self._written_lags: list[PartitionLag] = []
        self._lags_written_at = 0.0
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="projector-kafka")

    def stop(self) -> None:
        """Ask :meth:`run` to finish the batch in hand, commit it and return."""
        self._stop.set()

    async def _kafka(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def run(self) -> ProjectorStats:
        """Project until :meth:`stop`; a non-transient error propagates."""
        self._loop = asyncio.get_running_loop()
        try:
            consumer = await self._kafka(Consumer, self.config.consumer_config())
            try:
                await self._kafka(
                    consumer.subscribe, list(self.config.topics), on_assign=self._on_assign
                )
                while not self._stop.is_set():
                    await self._step(consumer)
                    self._heartbeat.beat()
            finally:
                await self._kafka(consumer.close)
        finally:
            self._executor.shutdown(wait=True)
        return self.stats

    async def _step(self, consumer: Consumer) -> None:
        batch = await self._kafka(self._take_batch, consumer)
        if self._metrics is not None:
            self._metrics.observe(batch.lags)
        if not batch.records and not self._lag_write_due(batch.lags):
            return
        outcome = await self._store(batch.records, batch.lags)
        if not batch.records:
            return
        self.stats.batches += 1
        self.stats.applied += outcome.applied
        self.stats.skipped += outcome.skipped
        self.stats.errors_written += outcome.errors_written
        if self._metrics is not None:
            self._metrics.applied(outcome.applied)
        await self._kafka(self._commit, consumer, next_offsets(batch.records))

    # -- on the Kafka thread ---------------------------------------------------------

    def _take_batch(self, consumer: Consumer) -> _Batch:
        messages = consumer.consume(self.config.batch_max_events, self.config.batch_max_ms / 1000)
        records = [to_record(m, self._codec) for m in messages if _is_record(m)]
        return _Batch(records, measure_lag(consumer))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._loop is None:
            raise RuntimeError("assignment before the projector runs")
        positions = [(tp.topic, tp.partition) for tp in partitions]
        future = asyncio.run_coroutine_threadsafe(self._stored_offsets(positions), self._loop)
        stored = future.result()
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.stats.assignments.append([(tp.topic, tp.partition, tp.offset) for tp in partitions])
        log.info(
            "assigned %d partitions, sought to the offsets in Postgres: %s",
            len(partitions),
            describe_partitions(positions),
        )
        if len(self.stats.assignments) == 1:
            activity_logger().info("ready: folding %d partitions into Postgres", len(partitions))

    def _commit(self, consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        partitions = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # Postgres already holds these offsets and assignment seeks to them: a failed
            # commit (e.g. during a rebalance) costs a redelivery that changes nothing.
            log.warning("Kafka offset commit failed (Postgres has them): %s", exc)

    # -- on the event loop -------------------------------------------------------------

    async def _stored_offsets(self, positions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        async for attempt in database_retrying(self._stop.is_set):
            with attempt:
                return await load_next_offsets(self._engine, self.config.group_id, positions)
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _lag_write_due(self, lags: list[PartitionLag]) -> bool:
        if not lags:
            return False
        stale = time.monotonic() - self._lags_written_at >= self._lag_refresh_s
        return stale or lags != self._written_lags

    async def _store(
        self, records: list[ProjectionRecord], lags: list[PartitionLag]
    ) -> BatchOutcome:
        """Apply the batch and the lag rows in one transaction, retrying while Postgres is
        away.  Returns only once they are committed (or raises, committing nothing)."""
        group = self.config.group_id
        async for attempt in database_retrying(self._stop.is_set):
            with attempt:
                async with self._engine.begin() as connection:
                    outcome = await apply_batch_in(connection, group, records)
                    await write_lag(connection, group, lags)
        self._written_lags = lags
        self._lags_written_at = time.monotonic()
        return outcome


def _is_record(message: Message) -> bool:
    """True for a record; raises on a fatal consumer error, logs the others (librdkafka
    reports transient broker trouble here and recovers by itself)."""
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return False


def describe_partitions(positions: list[tuple[str, int]]) -> str:
    """`topic[0,2] other[1]`: which partitions a member holds, for the log (the broker's
    DescribeGroups may not say: Tansu lists no members)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(positions):
        by_topic.setdefault(topic, []).append(partition)
    return " ".join(f"{topic}[{','.join(map(str, parts))}]" for topic, parts in by_topic.items())
