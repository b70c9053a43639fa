from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from producer_api.app import create_app
from schemas.events import TranscriptionRequested
from storage.s3 import ObjectStore
from tests.integration.api.audio_stream import multipart_of, wav_bytes
from tests.integration.api.conftest import ENV_ADMIN_KEY, read_topic, start_api
from tests.integration.api.helpers import form
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

pytestmark = pytest.mark.integration


def _uploads(store: ObjectStore, settings: Settings) -> set[str]:
    return set(store.list_keys(settings.audio_bucket, "uploads/"))


async def test_limit_is_enforced_while_streaming_and_the_partial_object_removed(
    api_settings: Settings,
) -> None:
    settings = api_settings.model_copy(update={"max_upload_size_mb": 6})
    client, engine, store, (user, _, _) = await start_api(settings)
    try:
        before = _uploads(store, settings)
        response = await client.post(
            "/transcribe",
            data=multipart_of(wav_bytes(20 * 1024 * 1024)),
            headers={"X-API-Key": user},
        )
        assert response.status == 413
        assert response.content_type == "application/problem+json"
        assert "6 MB" in (await response.json())["detail"]
        assert _uploads(store, settings) == before
        assert read_topic(settings, settings.topic_requests_normal) == []
    finally:
        await client.close()
        store.close()
        await engine.dispose()


async def test_unconfirmed_publish_answers_503_and_removes_the_upload(
    api_settings: Settings, jfk_bytes: bytes
) -> None:
    dead_broker = api_settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    client, engine, store, (user, _, _) = await start_api(
        dead_broker, producer_options={"delivery_timeout_s": 2.0}
    )
    try:
        before = _uploads(store, dead_broker)
        response = await client.post(
            "/transcribe", data=form(jfk_bytes), headers={"X-API-Key": user}
        )
        assert response.status == 503
        body = await response.json()
        assert "nothing was created" in body["detail"]
        assert response.headers["Retry-After"] == "5"
        assert _uploads(store, dead_broker) == before
        jobs = await (await client.get("/jobs", headers={"X-API-Key": user})).json()
        assert jobs["items"] == []
        health = await (
            await client.get("/admin/health", headers={"X-API-Key": ENV_ADMIN_KEY})
        ).json()
        assert health["status"] == "degraded"
        assert health["dependencies"]["kafka"]["status"] == "error"
    finally:
        await client.close()
        store.close()
        await engine.dispose()


async def test_postgres_down_still_accepts_the_job(
    api_settings: Settings, jfk_bytes: bytes
) -> None:
    settings = api_settings.model_copy(
        update={
            "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
            "whisperstream_admin_key": SecretStr(ENV_ADMIN_KEY),
        }
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.post(
            "/transcribe", data=form(jfk_bytes), headers={"X-API-Key": ENV_ADMIN_KEY}
        )
        assert response.status == 202, await response.text()
        job_id = (await response.json())["job_id"]
        events = read_topic(settings, settings.topic_requests_normal)
        assert [e.job_id for e in events if isinstance(e, TranscriptionRequested)] == [job_id]
        listing = await client.get("/jobs", headers={"X-API-Key": ENV_ADMIN_KEY})
        assert listing.status == 503
