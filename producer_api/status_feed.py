"""One reader of the status topic per API process, fanned out to the event streams.

A daemon thread assigns itself every partition of the status topic (no consumer group:
every API replica must see every event), starting at the end, and hands each batch to
the event loop. There the feed delivers each record to the subscriptions that want it:
one job's, one owner's, or every job's. A subscription holds at most ``client_queue``
undelivered records; one that falls further behind is dropped, so a slow client costs
bounded memory and never slows the others.

Resuming needs the records between a client's cursor and now: the feed keeps the most
recent ``replay_events`` records in memory and reads older ones from Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy.exc import SQLAlchemyError

from ops.kafka.offsets import high_watermarks
from producer_api.job_events import Cursor, StatusRecord
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import JobStatusChanged
from whisperstream.kafka_security import KafkaConnection, as_connection

log = logging.getLogger(__name__)

OwnerLookup = Callable[[list[str]], Awaitable[dict[str, str | None]]]
"""Job ids -> their owners (None: no such job yet, or no owner)."""

_Raw = tuple[int, int, JobStatusChanged | None]
_LATEST_JOBS = 50_000
_OWNER_CACHE = 100_000


class SubscriptionEndedError(Exception):
    """The subscription was dropped (too slow) or the feed is shutting down."""


class Subscription:
    """The records one stream still has to send, in the order the feed read them."""

    def __init__(
        self, feed: StatusFeed, start: Cursor, limit: int, index: tuple[str, str | None]
    ) -> None:
        self.start = start
        """The feed's position when the stream subscribed: it delivers from there on."""
        self.index = index
        """Which of the feed's indexes holds it: ("job", id), ("owner", id), ("all", None)."""
        self._feed = feed
        self._limit = limit
        self._items: deque[StatusRecord] = deque()
        self._wake = asyncio.Event()
        self.ended: str | None = None
        # next()'s timeout: one timer per subscription, moved on only when it fires, so
        # a wait costs no timer of its own (1,000 streams wake for every event).
        self._returned_at: float | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def deliver(self, record: StatusRecord) -> None:
        if self.ended is not None or record.offset < self.start.get(record.partition, 0):
            return
        if len(self._items) >= self._limit:
            self.end("dropped: the client read its events too slowly")
            return
        self._items.append(record)
        self._wake.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._items.clear()
            self._wake.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def next(self, timeout_s: float) -> StatusRecord | None:
        """The next record; None once ``timeout_s`` passed without one since the last
        call returned."""
        loop = asyncio.get_running_loop()
        if not self._items and self.ended is None:
            self._wake.clear()
            since = loop.time() if self._returned_at is None else self._returned_at
            self._deadline = since + timeout_s
            if self._timer is None or self._timer.when() > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(self._deadline, self._time_up)
            await self._wake.wait()
        if self.ended is not None:
            raise SubscriptionEndedError(self.ended)
        self._returned_at = loop.time()
        return self._items.popleft() if self._items else None

    def _time_up(self) -> None:
        self._timer = None
        if self.ended is not None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            self._wake.set()  # next() finds no record: None
        else:  # records came meanwhile: the deadline moved on
            self._timer = loop.call_at(self._deadline, self._time_up)

    def close(self) -> None:
        self._feed.unsubscribe(self)


class StatusFeed:
    def __init__(
        self,
        kafka: KafkaConnection | str,
        topic: str,
        codec: EventCodec,
        owners: OwnerLookup,
        *,
        client_queue: int = 1000,
        replay_events: int = 20_000,
    ) -> None:
        self._kafka = as_connection(kafka)
        self._topic = topic
        self._codec = codec
        self._owners = owners
        self._client_queue = client_queue
        self._replay_events = replay_events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._positions: Cursor = {}
        self._floor: Cursor = {}
        self._recent: dict[int, deque[StatusRecord]] = {}
        self._latest: OrderedDict[str, StatusRecord] = OrderedDict()
        self._owner_of: OrderedDict[str, str] = OrderedDict()
        self._by_job: dict[str, set[Subscription]] = {}
        self._by_owner: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._batches: asyncio.Queue[list[_Raw]] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_positions: Cursor = {}
        """The reader thread's own: the next offset of each partition it has read."""
        self._dispatcher: asyncio.Task[None] | None = None
        self.error: str | None = None
        self.dropped = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="status-feed")
        self._thread = threading.Thread(target=self._read, name="status-feed", daemon=True)
        self._thread.start()

    def end_all(self, reason: str) -> None:
        for subscription in self._subscriptions():
            subscription.end(reason)

    async def stop(self) -> None:
        self.end_all("the API is shutting down")
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    async def wait_ready(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self._ready.is_set()

    @property
    def subscriber_count(self) -> int:
        return sum(1 for _ in self._subscriptions())

    # -- subscriptions -----------------------------------------------------------------

    def positions(self) -> Cursor:
        return dict(self._positions)

    def _start(self, since: Cursor | None) -> Cursor:
        # A client resuming from another replica may be ahead of this one: never
        # deliver what its cursor says it already has.
        start = self.positions()
        for partition, offset in (since or {}).items():
            start[partition] = max(start.get(partition, 0), offset)
        return start

    def subscribe_job(self, job_id: str, since: Cursor | None = None) -> Subscription:
        subscription = Subscription(self, self._start(since), self._client_queue, ("job", job_id))
        self._by_job.setdefault(job_id, set()).add(subscription)
        return subscription

    def subscribe_jobs(self, owner: str | None, since: Cursor | None = None) -> Subscription:
        """Every job's records (``owner=None``), or those of one owner's jobs."""
        if owner is None:
            subscription = Subscription(self, self._start(since), self._client_queue, ("all", None))
            self._everything.add(subscription)
        else:
            subscription = Subscription(
                self, self._start(since), self._client_queue, ("owner", owner)
            )
            self._by_owner.setdefault(owner, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.end("closed")
        kind, key = subscription.index
        if kind == "all":
            self._everything.discard(subscription)
            return
        index = self._by_job if kind == "job" else self._by_owner
        members = index.get(key or "")
        if members is not None:
            members.discard(subscription)
            if not members:
                del index[key or ""]

    def latest(self, job_id: str) -> StatusRecord | None:
        """The newest record of a job this feed has read, if any."""
        return self._latest.get(job_id)

    def remember_owner(self, job_id: str, owner: str) -> None:
        """This process queued the job, so its owner is known without asking Postgres."""
        self._owner_of[job_id] = owner
        if len(self._owner_of) > _OWNER_CACHE:
            self._owner_of.popitem(last=False)

    def _subscriptions(self) -> Iterable[Subscription]:
        seen: set[int] = set()
        for group in (self._everything, *self._by_job.values(), *self._by_owner.values()):
            for subscription in list(group):
                if id(subscription) not in seen:
                    seen.add(id(subscription))
                    yield subscription

    # -- records between a cursor and now ---------------------------------------------

    async def replay(self, since: Cursor, until: Cursor) -> list[StatusRecord]:
        """Every record from ``since`` up to (not including) ``until``, per partition in
        offset order; from memory when it still holds them, from Kafka otherwise."""
        found: list[StatusRecord] = []
        from_kafka: dict[int, tuple[int, int]] = {}
        for partition, first in sorted(since.items()):
            end = until.get(partition, first)
            if first >= end:
                continue
            if first >= self._floor.get(partition, end):
                held = self._recent.get(partition, ())
                found.extend(r for r in held if first <= r.offset < end)
            else:
                from_kafka[partition] = (first, end)
        if from_kafka:
            found.extend(await asyncio.to_thread(self._read_range, from_kafka))
        found.sort(key=lambda r: (r.partition, r.offset))
        return found

    def _read_range(self, ranges: dict[int, tuple[int, int]]) -> list[StatusRecord]:
        consumer = Consumer(
            self._kafka.client_config(
                **{
                    "group.id": f"_whisperstream.api.replay.{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        try:
            consumer.assign([TopicPartition(self._topic, p, r[0]) for p, r in ranges.items()])
            pending = {p: end for p, (_, end) in ranges.items()}
            found: list[StatusRecord] = []
            while pending and not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None:
                    continue
                partition = message.partition() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.pop(partition, None)
                        continue
                    raise KafkaException(error)
                offset = message.offset() or 0
                end = pending.get(partition)
                if end is None or offset >= end:
                    pending.pop(partition, None)
                    continue
                event = self._decode(message)
                if event is not None:
                    found.append(StatusRecord(partition, offset, event))
                if offset + 1 >= end:
                    del pending[partition]
            return found
        finally:
            consumer.close()

    # -- the reader thread ------------------------------------------------------------

    def _read(self) -> None:
        # A reader that fails starts again where it stopped, so no stream misses a record.
        while not self._stop.is_set():
            try:
                self._read_until_stopped()
            except Exception as exc:  # the streams report it; the API keeps serving
                log.exception("the status feed failed; reading again in 2 s")
                self.error = f"the status topic cannot be read: {exc}"
                self._stop.wait(2.0)

    def _read_until_stopped(self) -> None:
        consumer = Consumer(
            self._kafka.client_config(
                **{
                    "group.id": f"_whisperstream.api.status.{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    # Tansu answers a fetch only when this wait is over, even when
                    # records arrive sooner: it bounds how late an event reaches a
                    # stream (an idle API sends 50 small fetches a second).
                    "fetch.wait.max.ms": 20,
                }
            )
        )
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(2.0)
            while not self._stop.is_set():
                # consume() waits for its whole batch or the timeout: wait for one
                # record only, then take what else is already there.
                first = consumer.poll(0.2)
                if first is None:
                    continue
                messages = [first, *consumer.consume(499, 0)]
                batch: list[_Raw] = []
                for message in messages:
                    if message.error() is not None:
                        continue
                    event = self._decode(message)
                    batch.append((message.partition() or 0, message.offset() or 0, event))
                if batch:
                    self._hand_over(batch)
                    # only what was handed over counts as read: a failure inside a batch
                    # reads the whole batch again
                    for partition, offset, _ in batch:
                        self._read_positions[partition] = offset + 1
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        if self._read_positions:  # reading again after a failure: from where it stopped
            consumer.assign(
                [TopicPartition(self._topic, p, o) for p, o in self._read_positions.items()]
            )
            self.error = None
            return True
        try:
            metadata = consumer.list_topics(self._topic, timeout=5)
            found = metadata.topics.get(self._topic)
            if found is None or found.error is not None or not found.partitions:
                self.error = f"the status topic {self._topic} does not exist (yet)"
                return False
            partitions = sorted(found.partitions)
            ends = high_watermarks(self._kafka, [(self._topic, p) for p in partitions])
        except KafkaException as exc:
            self.error = f"the status topic cannot be read: {exc}"
            return False
        if any(end is None for end in ends.values()):
            self.error = f"the end of the status topic {self._topic} is unknown"
            return False
        start = {p: end or 0 for (_, p), end in ends.items()}
        self._read_positions = dict(start)
        consumer.assign([TopicPartition(self._topic, p, o) for p, o in start.items()])
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._begin, start)
        return True

    def _decode(self, message: Message) -> JobStatusChanged | None:
        try:
            return self._codec.decode(message.value() or b"", JobStatusChanged)
        except UndecodableEvent:
            return None  # the projector sends it to the DLQ; streams skip it

    def _hand_over(self, batch: list[_Raw]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed while we read
                loop.call_soon_threadsafe(self._batches.put_nowait, batch)

    # -- the event loop side ------------------------------------------------------------

    def _begin(self, start: Cursor) -> None:
        self._positions = dict(start)
        self._floor = dict(start)
        self.error = None
        self._ready.set()

    async def _dispatch_forever(self) -> None:
        while True:
            batch = await self._batches.get()
            owners: dict[str, str | None] = {}
            if self._by_owner:
                owners = await self._resolve_owners(batch)
            self._dispatch(batch, owners)

    async def _resolve_owners(self, batch: list[_Raw]) -> dict[str, str | None]:
        return await self.owners_of([event.job_id for _, _, event in batch if event is not None])

    async def owners_of(self, job_ids: Iterable[str]) -> dict[str, str | None]:
        """Each job's owner: remembered, or read from Postgres (None: not known there)."""
        wanted = set(job_ids)
        known: dict[str, str | None] = {j: self._owner_of[j] for j in wanted if j in self._owner_of}
        missing = sorted(wanted - known.keys())
        if missing:
            try:
                looked_up = await asyncio.wait_for(self._owners(missing), 5.0)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                # Postgres away: these events reach the admin and job streams only
                log.warning("owners of %d jobs could not be read: %s", len(missing), exc)
                looked_up = {}
            for job_id, owner in looked_up.items():
                known[job_id] = owner
                if owner is not None:
                    self.remember_owner(job_id, owner)
        return known

    def _dispatch(self, batch: list[_Raw], owners: dict[str, str | None]) -> None:
        per_partition = max(1, self._replay_events // max(1, len(self._positions)))
        for partition, offset, event in batch:
            self._positions[partition] = offset + 1
            if event is None:
                continue
            record = StatusRecord(partition, offset, event)
            recent = self._recent.setdefault(partition, deque())
            recent.append(record)
            if len(recent) > per_partition:
                self._floor[partition] = recent.popleft().offset + 1
            self._latest[event.job_id] = record
            self._latest.move_to_end(event.job_id)
            if len(self._latest) > _LATEST_JOBS:
                self._latest.popitem(last=False)
            self._deliver(record, owners.get(event.job_id))

    def _deliver(self, record: StatusRecord, owner: str | None) -> None:
        targets: list[Subscription] = [*self._everything]
        targets.extend(self._by_job.get(record.event.job_id, ()))
        if owner is not None:
            targets.extend(self._by_owner.get(owner, ()))
        for subscription in targets:
            subscription.deliver(record)
            if subscription.ended is not None:
                self.dropped += 1
                self.unsubscribe(subscription)

    def describe(self) -> dict[str, Any]:
        return {
            "ready": self._ready.is_set(),
            "error": self.error,
            "subscribers": self.subscriber_count,
            "dropped": self.dropped,
        }
