"""The worker's request consumer fetches with WORKER_FETCH_MAX_WAIT_MS once it is started
against the real broker (aiokafka reads the wait into its fetcher as it starts)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stream_workers.config import load_tuning
from stream_workers.faust_app import build_app
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


async def test_the_started_consumer_fetches_with_the_configured_wait(
    fresh_topics: Settings,
) -> None:
    service = SimpleNamespace(
        settings=fresh_topics, tuning=load_tuning(worker_fetch_max_wait_ms=80)
    )
    app = build_app(service)  # type: ignore[arg-type]
    thread = app.consumer._thread
    consumer = thread._create_consumer(asyncio.get_running_loop())
    try:
        await consumer.start()
        assert consumer._fetcher._fetch_max_wait_ms == 80
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the consumer thread's own loop, never started here
