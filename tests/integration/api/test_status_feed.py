"""The API's status feed against the real broker: one reader fanned out by job, owner
and everything; replay from memory and from Kafka give the same records; a
subscription that falls behind is dropped without holding up the others."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from producer_api.job_events import StatusRecord
from producer_api.status_feed import StatusFeed, Subscription, SubscriptionEndedError
from schemas.codec import EventCodec
from schemas.events import JobStatus, JobStatusChanged, new_event_id, utc_now
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

JOB_A = str(uuid.uuid4())
JOB_B = str(uuid.uuid4())
OWNERS = {JOB_A: "owner-a", JOB_B: "owner-b"}


async def _owners(job_ids: Sequence[str]) -> dict[str, str | None]:
    return {job_id: OWNERS.get(job_id) for job_id in job_ids}


def _event(job_id: str, seq: int, status: JobStatus = JobStatus.PROCESSING) -> JobStatusChanged:
    return JobStatusChanged(
        event_id=new_event_id(),
        job_id=job_id,
        occurred_at=utc_now(),
        attempt=1,
        seq=seq,
        status=status,
        progress=min(1.0, seq / 10),
        worker_id="w",
        engine=None,
        model=None,
        error=None,
        result=None,
        timing=None,
    )


@pytest.fixture
async def codec() -> AsyncIterator[EventCodec]:
    with EventCodec() as codec:
        yield codec


async def _feed(settings: Settings, codec: EventCodec, **options: int) -> StatusFeed:
    feed = StatusFeed(
        settings.kafka_bootstrap_servers, settings.topic_status, codec, _owners, **options
    )
    feed.start()
    assert await feed.wait_ready(30), feed.error
    return feed


async def _publish(settings: Settings, codec: EventCodec, events: list[JobStatusChanged]) -> None:
    producer = KafkaProducer.from_settings(settings, client_id="test-status-feed")
    await producer.start()
    try:
        for event in events:
            await producer.send(settings.topic_status, event.job_id, codec.encode(event))
    finally:
        await producer.close()


async def _take(subscription: Subscription, count: int) -> list[StatusRecord]:
    taken: list[StatusRecord] = []
    while len(taken) < count:
        record = await subscription.next(30)
        assert record is not None, f"got {len(taken)} of {count} records"
        taken.append(record)
    return taken


def _seqs(records: list[StatusRecord]) -> list[tuple[str, int]]:
    return [(r.event.job_id, r.event.seq) for r in records]


async def test_records_reach_each_subscription_that_wants_them(
    fresh_topics: Settings, codec: EventCodec
) -> None:
    feed = await _feed(fresh_topics, codec)
    try:
        one_job = feed.subscribe_job(JOB_A)
        one_owner = feed.subscribe_jobs("owner-b")
        everything = feed.subscribe_jobs(None)
        events = [_event(JOB_A, 1), _event(JOB_B, 1), _event(JOB_A, 2), _event(JOB_B, 2)]
        await _publish(fresh_topics, codec, events)
        assert _seqs(await _take(one_job, 2)) == [(JOB_A, 1), (JOB_A, 2)]
        assert _seqs(await _take(one_owner, 2)) == [(JOB_B, 1), (JOB_B, 2)]
        seen = await _take(everything, 4)
        assert sorted(_seqs(seen)) == sorted((e.job_id, e.seq) for e in events)
        latest = feed.latest(JOB_A)
        assert latest is not None
        assert latest.event.seq == 2
    finally:
        await feed.stop()


async def test_replay_from_memory_and_from_kafka_agree(
    fresh_topics: Settings, codec: EventCodec
) -> None:
    remembering = await _feed(fresh_topics, codec)
    forgetting = await _feed(fresh_topics, codec, replay_events=0)
    try:
        since = remembering.positions()
        assert forgetting.positions() == since
        watch = remembering.subscribe_jobs(None), forgetting.subscribe_jobs(None)
        events = [_event(JOB_A, n) for n in range(1, 6)] + [_event(JOB_B, n) for n in (1, 2)]
        await _publish(fresh_topics, codec, events)
        for subscription in watch:
            await _take(subscription, len(events))
        from_memory = await remembering.replay(since, remembering.positions())
        from_kafka = await forgetting.replay(since, forgetting.positions())
        assert _seqs(from_memory) == _seqs(from_kafka)
        assert sorted(_seqs(from_memory)) == sorted((e.job_id, e.seq) for e in events)
        # a cursor in the middle: exactly the records after it
        middle = from_memory[2]
        cursor = {**since, middle.partition: middle.offset + 1}
        after = await forgetting.replay(cursor, forgetting.positions())
        expected = [
            r for r in from_memory if r.partition != middle.partition or r.offset > middle.offset
        ]
        assert _seqs(after) == _seqs(expected)
    finally:
        await remembering.stop()
        await forgetting.stop()


async def test_a_subscription_that_falls_behind_is_dropped(
    fresh_topics: Settings, codec: EventCodec
) -> None:
    feed = await _feed(fresh_topics, codec, client_queue=3)
    try:
        slow = feed.subscribe_jobs(None)
        keeping_up = feed.subscribe_job(JOB_A)
        events = [_event(JOB_B, n) for n in range(1, 6)] + [_event(JOB_A, 1)]
        await _publish(fresh_topics, codec, events)
        assert _seqs(await _take(keeping_up, 1)) == [(JOB_A, 1)]
        with pytest.raises(SubscriptionEndedError, match="too slowly"):
            await slow.next(1)
        assert feed.dropped == 1
        assert feed.subscriber_count == 1
    finally:
        await feed.stop()


async def test_a_resuming_subscription_never_gets_what_its_cursor_has(
    fresh_topics: Settings, codec: EventCodec
) -> None:
    feed = await _feed(fresh_topics, codec)
    try:
        start = feed.positions()
        ahead = {partition: offset + 2 for partition, offset in start.items()}
        subscription = feed.subscribe_jobs(None, since=ahead)
        events = [_event(JOB_A, n) for n in range(1, 5)]
        await _publish(fresh_topics, codec, events)
        # JOB_A's records share a partition: the first two are behind the cursor
        assert _seqs(await _take(subscription, 2)) == [(JOB_A, 3), (JOB_A, 4)]
    finally:
        await feed.stop()


class _FailsOnce(EventCodec):
    """A codec whose first decode raises something unexpected (not UndecodableEvent)."""

    failed = False

    def decode(self, value: bytes, kind: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("an unexpected failure inside the reader")
        return super().decode(value, kind)


async def test_a_reader_that_fails_reads_again_from_where_it_stopped(
    fresh_topics: Settings, codec: EventCodec
) -> None:
    flaky = _FailsOnce()
    with flaky:
        feed = await _feed(fresh_topics, flaky)
        try:
            everything = feed.subscribe_jobs(None)
            events = [_event(JOB_A, n) for n in range(1, 4)]
            await _publish(fresh_topics, codec, events)
            assert _seqs(await _take(everything, 3)) == [(JOB_A, 1), (JOB_A, 2), (JOB_A, 3)]
            assert flaky.failed
            assert await everything.next(0.5) is None  # nothing twice
        finally:
            await feed.stop()
