"""An OpenAI-compatible request whose client goes away before the result: its job is
cancelled, unless WHISPERSTREAM_OPENAI_CANCEL_ON_DISCONNECT=false. No worker runs here,
so the job stays pending and the client's timeout is what ends the request.

aiohttp's test server cancels a handler whose client left (handler_cancellation), which
`run_app` does not: tests/e2e/test_live_events.py covers the API as `whisperstream api`
runs it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from schemas.events import CancelRequested, TranscriptionRequested
from tests.integration.api.conftest import Api, read_topic, start_api
from tests.integration.api.helpers import form
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

_ENDED = 'method="POST",route="/v1/audio/transcriptions"'


@pytest.fixture
async def keeping_api(api_settings: Settings) -> AsyncIterator[Api]:
    settings = api_settings.model_copy(update={"whisperstream_openai_cancel_on_disconnect": False})
    client, engine, store, (user, other, admin) = await start_api(settings)
    try:
        yield Api(client, settings, engine, store, user, other, admin)
    finally:
        await client.close()
        store.close()
        await engine.dispose()


async def _leave_mid_request(api: Api, jfk_bytes: bytes) -> str:
    """Send a transcription request, go away, and wait until the API has seen it go."""
    body = form(jfk_bytes, model="whisper-1")
    with pytest.raises(TimeoutError):
        await api.client.post(
            "/v1/audio/transcriptions",
            data=body,
            headers=api.auth(),
            timeout=aiohttp.ClientTimeout(total=3),
        )
    deadline = time.monotonic() + 30
    while True:  # the request is counted once its handler has ended
        metrics = await (await api.client.get("/metrics")).text()
        ended = [
            line
            for line in metrics.splitlines()
            if line.startswith("whisperstream_api_requests_total") and _ENDED in line
        ]
        if ended:
            break
        assert time.monotonic() < deadline, "the API never noticed the client left"
        await asyncio.sleep(0.2)
    (request,) = read_topic(api.settings, api.settings.topic_requests_high)
    assert isinstance(request, TranscriptionRequested)
    return request.job_id


def _cancels(api: Api, job_id: str) -> list[CancelRequested]:
    return [
        e
        for e in read_topic(api.settings, api.settings.topic_control)
        if isinstance(e, CancelRequested) and e.job_id == job_id
    ]


async def test_a_client_that_leaves_cancels_its_job(api: Api, jfk_bytes: bytes) -> None:
    job_id = await _leave_mid_request(api, jfk_bytes)
    assert len(_cancels(api, job_id)) == 1
    job = await (await api.client.get(f"/transcribe/{job_id}", headers=api.auth())).json()
    assert job["priority"] == "high"
    assert job["cancel_requested_at"] is not None


async def test_with_cancel_on_disconnect_off_the_job_goes_on(
    keeping_api: Api, jfk_bytes: bytes
) -> None:
    job_id = await _leave_mid_request(keeping_api, jfk_bytes)
    assert _cancels(keeping_api, job_id) == []
