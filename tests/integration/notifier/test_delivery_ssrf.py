"""SSRF at delivery, with WEBHOOK_ALLOW_PRIVATE_NETWORKS off: the dispatcher and its real
HTTP client against a receiver on loopback, reached by a name that resolves to
127.0.0.1 and by the IP itself.  Nothing reaches the receiver; each delivery is
recorded as failed, not retried."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from notifier.dispatcher import DispatchConfig, Dispatcher
from notifier.sender import Sender
from notifier.store import NewDelivery, job_deliveries, schedule
from schemas.events import utc_now
from tests.integration.notifier.conftest import FALLBACK_SECRET
from tests.integration.notifier.receiver import Receiver
from tests.integration.projector.helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _deliver(engine: AsyncEngine, url: str, *, allow_private: bool) -> uuid.UUID:
    job_id = uuid.uuid4()
    async with engine.begin() as connection:
        await schedule(
            connection,
            [
                NewDelivery(
                    job_id, str(uuid.uuid4()), "transcription.completed", url, None, "{}", utc_now()
                )
            ],
            utc_now(),
        )
    config = DispatchConfig(
        concurrency=4,
        per_host=2,
        timeout_s=2.0,
        schedule=(0.1,),
        poll_interval_s=0.1,
        fallback_secret=FALLBACK_SECRET,
    )
    async with Sender(timeout_s=2.0, allow_private=allow_private, connections=4) as sender:
        dispatcher = Dispatcher(config, engine, sender)
        running = asyncio.create_task(dispatcher.run())

        async def settled() -> bool:
            rows = await job_deliveries(engine, job_id)
            return bool(rows) and rows[-1].status != "pending"

        try:
            await eventually(settled, within_s=30, what=f"the delivery to {url}")
        finally:
            dispatcher.stop()
            await asyncio.wait_for(running, 30)
    return job_id


async def test_loopback_by_name_and_by_address_is_refused_at_delivery(engine: AsyncEngine) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        port = receiver.base_url.rsplit(":", 1)[1]
        for url in (f"http://localhost:{port}/ok", f"http://127.0.0.1:{port}/ok"):
            job_id = await _deliver(engine, url, allow_private=False)
            (row,) = await job_deliveries(engine, job_id)
            assert row.status == "failed", row
            assert row.error is not None
            assert "refused" in row.error
            assert "loopback" in row.error
        assert receiver.received == []
        # the same receiver with private networks allowed: delivered
        job_id = await _deliver(engine, f"http://localhost:{port}/ok", allow_private=True)
        (row,) = await job_deliveries(engine, job_id)
        assert (row.status, row.status_code) == ("succeeded", 200)
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()
