"""The `CancelView` port: the unit tests' `MemoryCancels` and the worker's real view (a
`CancelRegistry` fed by the `ControlReader` from the control topic of the local stack's
broker) keep one contract; every test runs against both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from schemas.codec import EventCodec
from schemas.events import CancelRequested, utc_now
from stream_workers.kafka_io import CancelRegistry, ControlReader, KafkaPublisher
from stream_workers.ports import CancelView
from tests.support.fakes import MemoryCancels
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


@dataclass
class Side:
    view: CancelView
    request_cancel: Callable[[str], Awaitable[None]]
    """Ask for a job's cancel the way the system does; returns once it is requested."""


@pytest.fixture(params=["memory", "kafka"])
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    if request.param == "memory":
        fake = MemoryCancels()

        async def cancel_fake(job_id: str) -> None:
            fake.cancel(job_id)

        yield Side(fake, cancel_fake)
        return
    settings: Settings = request.getfixturevalue("fresh_topics")
    bootstrap = settings.kafka_bootstrap_servers
    with EventCodec() as codec:
        publisher = KafkaPublisher(bootstrap, codec, client_id="contract")
        await publisher.start()
        registry = CancelRegistry()
        reader = ControlReader(
            bootstrap,
            settings.topic_control,
            codec=codec,
            registry=registry,
            publisher=publisher,
            dlq_topic=settings.topic_dlq,
        )
        reader.start()

        async def cancel_through_kafka(job_id: str) -> None:
            # what the API's DELETE /transcribe/{id} produces
            event = CancelRequested(str(uuid.uuid4()), job_id, utc_now(), "contract", None)
            await publisher.publish(settings.topic_control, job_id, event)

        try:
            yield Side(registry, cancel_through_kafka)
        finally:
            reader.close()
            await publisher.close()


async def _until_cancelled(view: CancelView, job_id: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not view.is_cancelled(job_id):
        assert time.monotonic() < deadline, f"the cancel of {job_id} was never seen"
        await asyncio.sleep(0.05)


async def test_a_job_nobody_cancelled_is_not_cancelled(side: Side) -> None:
    assert not side.view.is_cancelled(str(uuid.uuid4()))


async def test_a_requested_cancel_is_seen_for_that_job_only(side: Side) -> None:
    cancelled, other = str(uuid.uuid4()), str(uuid.uuid4())
    await side.request_cancel(cancelled)
    await _until_cancelled(side.view, cancelled)
    assert not side.view.is_cancelled(other)


async def test_cancels_are_seen_in_any_number_and_stay_seen(side: Side) -> None:
    jobs = [str(uuid.uuid4()) for _ in range(5)]
    for job_id in jobs:
        await side.request_cancel(job_id)
    # the last one seen: on the real side the control topic's one partition is read in order
    await _until_cancelled(side.view, jobs[-1])
    assert all(side.view.is_cancelled(job_id) for job_id in jobs)
    await side.request_cancel(jobs[0])  # asked twice: still cancelled, nothing undone
    assert side.view.is_cancelled(jobs[0])
