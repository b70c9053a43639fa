"""Status events to scheduled deliveries: the notifier's consumer group on the status topic.

For each terminal status event the job's ``callback_url`` and ``owner`` are read from
the projection (``transcription_jobs``), which holds them for API and upstream
requests alike; the notifier does not read the request topics and keep a second copy.
The status event can arrive before the projector has folded the request in: such an
event waits (in memory, re-checked each round) and its partition's offset is not
committed past it, so a crash meanwhile redelivers it.

A partition's offset is committed only past events whose first attempt is in Postgres
(or that need no callback): an attempt row is the durable schedule, and inserting it
again on redelivery changes nothing.

Threading as in the projector: every call on the blocking consumer runs on one
executor thread, which is also where the rebalance callbacks fire.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from db.projector.config import SESSION_TIMEOUT_MS
from db.projector.decoding import decode_payload
from db.projector.lag import PartitionLag, measure_lag, write_lag
from db.projector.retry import database_retrying
from notifier.metrics import NotifierMetrics
from notifier.payload import EVENT_TYPES, callback_body
from notifier.store import NewDelivery, job_targets, schedule
from schemas.codec import EventCodec
from schemas.events import JobStatusChanged

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

LAG_REFRESH_S = 5.0
REQUEST_WAIT_WARN_S = 60.0
"""An event still waiting for its job's request after this long is logged (once)."""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    bootstrap_servers: str
    group_id: str
    topic: str
    api_base_url: str
    batch_max_events: int = 500
    batch_max_ms: int = 200
    max_waiting: int = 10_000
    """Events waiting for their request beyond which no more are fetched."""
    # librdkafka's security properties (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, ...)
    security: Mapping[str, str] = field(default_factory=dict)

    def consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **self.security,
            "group.id": self.group_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }


@dataclass(slots=True)
class _Waiting:
    event: JobStatusChanged
    partition: int
    offset: int
    since: float
    warned: bool = False


@dataclass(slots=True)
class ConsumerStats:
    terminal_events: int = 0
    scheduled: int = 0
    without_callback: int = 0
    undecodable: int = 0
    assignments: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class StatusConsumer:
    """One member of the notifier's consumer group."""

    def __init__(
        self,
        config: ConsumerConfig,
        engine: AsyncEngine,
        codec: EventCodec,
        on_scheduled: Callable[[], None],
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.config = config
        self.stats = ConsumerStats()
        self._engine = engine
        self._codec = codec
        self._on_scheduled = on_scheduled
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._waiting: list[_Waiting] = []
        self._positions: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lags_written_at = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="notifier-kafka")

    def stop(self) -> None:
        self._stop.set()

    async def _kafka(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def run(self) -> ConsumerStats:
        self._loop = asyncio.get_running_loop()
        try:
            consumer = await self._kafka(Consumer, self.config.consumer_config())
            try:
                await self._kafka(
                    consumer.subscribe,
                    [self.config.topic],
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                )
                while not self._stop.is_set():
                    await self._step(consumer)
            finally:
                await self._kafka(consumer.close)
        finally:
            self._executor.shutdown(wait=True)
        return self.stats

    async def _step(self, consumer: Consumer) -> None:
        fetch = len(self._waiting) < self.config.max_waiting
        messages, lags = await self._kafka(self._take, consumer, fetch)
        if self._metrics is not None:
            self._metrics.observe_lag(lags)
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            self._positions[partition] = offset + 1
            event = self._terminal_event(message)
            if event is not None:
                self._waiting.append(_Waiting(event, partition, offset, time.monotonic()))
        if self._waiting:
            await self._schedule_ready()
        if lags and time.monotonic() - self._lags_written_at >= LAG_REFRESH_S:
            await self._write_lag(lags)
        due = {
            partition: offset
            for partition, offset in self._commit_offsets().items()
            if self._committed.get(partition) != offset
        }
        if due:
            await self._kafka(self._commit, consumer, due)

    def _terminal_event(self, message: Message) -> JobStatusChanged | None:
        raw = message.value()
        decoded = decode_payload(raw.encode() if isinstance(raw, str) else raw, self._codec)
        if not isinstance(decoded, JobStatusChanged):
            # the projector sends undecodable records to the DLQ; counting them is enough
            self.stats.undecodable += 1
            return None
        if decoded.status not in EVENT_TYPES:
            return None
        self.stats.terminal_events += 1
        return decoded

    async def _schedule_ready(self) -> None:
        """Schedule every waiting event whose job's request is in the projection."""
        ids = [uuid.UUID(w.event.job_id) for w in self._waiting if _is_uuid(w.event.job_id)]
        async for attempt in database_retrying(self._stop.is_set):
            with attempt:
                async with self._engine.connect() as connection:
                    targets = await job_targets(connection, ids)
        now = datetime.now(UTC)
        new: list[NewDelivery] = []
        still: list[_Waiting] = []
        for waiting in self._waiting:
            event = waiting.event
            if not _is_uuid(event.job_id):
                log.warning("status event %s names no job id: %r", event.event_id, event.job_id)
                continue
            target = targets.get(uuid.UUID(event.job_id))
            if target is None or not target.has_request:
                self._warn_if_long(waiting)
                still.append(waiting)
                continue
            if target.callback_url is None:
                self.stats.without_callback += 1
                continue
            body = callback_body(event, self.config.api_base_url)
            new.append(
                NewDelivery(
                    job_id=uuid.UUID(event.job_id),
                    event_id=event.event_id,
                    event_type=EVENT_TYPES[event.status],
                    url=target.callback_url,
                    owner=target.owner,
                    body=body,
                    due_at=now,
                )
            )
        if new:
            async for attempt in database_retrying(self._stop.is_set):
                with attempt:
                    async with self._engine.begin() as connection:
                        added = await schedule(connection, new, now)
            self.stats.scheduled += added
            if self._metrics is not None:
                self._metrics.scheduled(added)
            self._on_scheduled()
        self._waiting = still

    def _warn_if_long(self, waiting: _Waiting) -> None:
        if not waiting.warned and time.monotonic() - waiting.since > REQUEST_WAIT_WARN_S:
            waiting.warned = True
            log.warning(
                "job %s ended but its request is not in Postgres after %.0f s: is the "
                "projector running? its callback waits",
                waiting.event.job_id,
                REQUEST_WAIT_WARN_S,
            )

    def _commit_offsets(self) -> dict[int, int]:
        return offsets_to_commit(self._positions, [(w.partition, w.offset) for w in self._waiting])

    async def _write_lag(self, lags: list[PartitionLag]) -> None:
        try:
            async with self._engine.begin() as connection:
                await write_lag(connection, self.config.group_id, lags)
        except Exception as exc:  # noqa: BLE001 - lag is advisory; the next round retries
            log.warning("could not write the notifier's lag: %s", exc)
            return
        self._lags_written_at = time.monotonic()

    # -- on the Kafka thread ---------------------------------------------------------

    def _take(self, consumer: Consumer, fetch: bool) -> tuple[list[Message], list[PartitionLag]]:
        if not fetch:
            time.sleep(self.config.batch_max_ms / 1000)
            return [], measure_lag(consumer)
        messages = consumer.consume(self.config.batch_max_events, self.config.batch_max_ms / 1000)
        return [m for m in messages if _is_record(m)], measure_lag(consumer)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        self.stats.assignments += 1
        log.info("notifier assigned %d status partitions", len(partitions))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stats.ready.set)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the partition's next owner starts from its committed offset, which never
        # passed these events: they are its to schedule now
        revoked = {tp.partition for tp in partitions}
        self._waiting = [w for w in self._waiting if w.partition not in revoked]
        for partition in revoked:
            self._positions.pop(partition, None)
            self._committed.pop(partition, None)
        consumer.unassign()

    def _commit(self, consumer: Consumer, offsets: dict[int, int]) -> None:
        partitions = [TopicPartition(self.config.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # the events are scheduled in Postgres; a redelivery inserts nothing new
            log.warning("Kafka offset commit failed: %s", exc)
            return
        self._committed.update(offsets)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def offsets_to_commit(
    positions: Mapping[int, int], waiting: list[tuple[int, int]]
) -> dict[int, int]:
    """Each partition's next offset, held back at its oldest waiting event.

    `positions` is the offset after the last record read per partition; `waiting` the
    (partition, offset) of events not yet durably scheduled. Committing a waiting
    event's own offset makes the partition's next owner read it again.
    """
    offsets = dict(positions)
    for partition, offset in waiting:
        if partition in offsets:
            offsets[partition] = min(offsets[partition], offset)
    return offsets


def _is_record(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return False
