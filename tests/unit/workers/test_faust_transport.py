"""WORKER_FETCH_MAX_WAIT_MS reaches the aiokafka consumer faust builds for the worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stream_workers.config import load_tuning
from stream_workers.faust_app import app_id, build_app
from stream_workers.faust_transport import WorkerTransport
from whisperstream.errors import SettingsError
from whisperstream.settings import Settings


async def test_the_worker_consumer_waits_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_FETCH_MAX_WAIT_MS", "75")
    service = SimpleNamespace(settings=Settings(), tuning=load_tuning())
    app = build_app(service)  # type: ignore[arg-type]
    assert isinstance(app.transport, WorkerTransport)
    # what the consumer thread does when the worker starts, before the consumer starts
    thread = app.consumer._thread
    consumer = thread._create_consumer(asyncio.get_running_loop())
    try:
        assert consumer._fetch_max_wait_ms == 75
        # everything else is as faust builds it: the workers' group, no auto-commit
        assert consumer._group_id == app_id(service)  # type: ignore[arg-type]
        assert consumer._enable_auto_commit is False
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the consumer thread's own loop, never started here


def test_the_default_wait_is_short_and_the_setting_is_bounded() -> None:
    assert load_tuning().worker_fetch_max_wait_ms == 100
    with pytest.raises(SettingsError, match="WORKER_FETCH_MAX_WAIT_MS"):
        load_tuning(worker_fetch_max_wait_ms=0)
