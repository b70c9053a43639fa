"""Fixtures of the projector tests (helpers live in helpers.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.projector.config import ProjectorConfig
from db.projector.service import Projector
from schemas.codec import EventCodec
from tests.integration.projector.helpers import EventProducer, RunningProjector, StartProjector
from whisperstream.settings import Settings


@pytest.fixture(scope="session")
def codec() -> Iterator[EventCodec]:
    with EventCodec() as codec:
        yield codec


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def producer(stack_settings: Settings, codec: EventCodec) -> Iterator[EventProducer]:
    events = EventProducer(
        Producer({"bootstrap.servers": stack_settings.kafka_bootstrap_servers, "linger.ms": 5}),
        codec,
    )
    try:
        yield events
    finally:
        events.flush()


@pytest.fixture
async def start_projector(codec: EventCodec) -> AsyncIterator[StartProjector]:
    """Start projectors as tasks of the test's loop; any still running are stopped after."""
    running: list[RunningProjector] = []

    async def start(
        config: ProjectorConfig, engine: AsyncEngine, **kwargs: Any
    ) -> RunningProjector:
        projector = Projector(config, engine, codec, **kwargs)
        handle = RunningProjector(projector, asyncio.create_task(projector.run()))
        running.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in running:
            if not handle.task.done():
                with contextlib.suppress(Exception):
                    await handle.stop()
