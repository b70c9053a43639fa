"""The API's side of webhooks: SSRF refusal at submit, a job's deliveries (owner or
admin), and the notifier's lag and backlog in /admin/health."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from notifier.store import NewDelivery, schedule
from schemas.events import TranscriptionRequested, utc_now
from tests.integration.api.conftest import ENV_ADMIN_KEY, Api, read_topic, start_api
from tests.integration.api.helpers import form, submit
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_callback_to_a_loopback_name_is_refused_at_submit(
    api: Api, jfk_bytes: bytes
) -> None:
    for url in ("http://localhost:9/hook", "http://127.0.0.1/hook", "http://169.254.169.254/x"):
        response = await api.client.post(
            "/transcribe", data=form(jfk_bytes, callback_url=url), headers=api.auth()
        )
        assert response.status == 422, await response.text()
        problem = await response.json()
        assert problem["errors"][0]["field"] == "callback_url"
        assert "refused" in problem["errors"][0]["message"]
    assert read_topic(api.settings, api.settings.topic_requests_normal) == []


@pytest.fixture
async def private_api(fresh_topics: Settings, fresh_database_url: str) -> AsyncIterator[Api]:
    settings = fresh_topics.model_copy(
        update={
            "database_url": fresh_database_url,
            "whisperstream_admin_key": SecretStr(ENV_ADMIN_KEY),
            "webhook_allow_private_networks": True,
        }
    )
    client, engine, store, (user, other, admin) = await start_api(settings)
    try:
        yield Api(client, settings, engine, store, user, other, admin)
    finally:
        await client.close()
        store.close()
        await engine.dispose()


async def test_a_jobs_deliveries_are_shown_to_its_owner_and_admins_only(
    private_api: Api, jfk_bytes: bytes
) -> None:
    api = private_api
    # private networks allowed (on-prem, tests): a loopback callback is accepted
    job_id = await submit(api, jfk_bytes, callback_url="http://localhost:9/hook")
    empty = await api.client.get(f"/transcribe/{job_id}/deliveries", headers=api.auth())
    assert (empty.status, (await empty.json())["deliveries"]) == (200, [])
    event_id = str(uuid.uuid4())
    async with api.engine.begin() as connection:
        await schedule(
            connection,
            [
                NewDelivery(
                    uuid.UUID(job_id),
                    event_id,
                    "transcription.completed",
                    "http://localhost:9/hook",
                    None,
                    "{}",
                    utc_now(),
                )
            ],
            utc_now(),
        )
    for key in (api.user_key, api.admin_key, ENV_ADMIN_KEY):
        response = await api.client.get(f"/transcribe/{job_id}/deliveries", headers=api.auth(key))
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["job_id"] == job_id
        (delivery,) = body["deliveries"]
        assert delivery["webhook_id"] == event_id
        assert (delivery["attempt"], delivery["status"]) == (1, "pending")
        assert delivery["next_attempt_at"] is not None
    other = await api.client.get(
        f"/transcribe/{job_id}/deliveries", headers=api.auth(api.other_key)
    )
    assert other.status == 404
    missing = await api.client.get(f"/transcribe/{uuid.uuid4()}/deliveries", headers=api.auth())
    assert missing.status == 404

    health = await api.client.get("/admin/health", headers=api.auth(api.admin_key))
    notifier = (await health.json())["notifier"]
    assert notifier["pending_deliveries"] == 1
    assert notifier["oldest_due"] is not None
    # no notifier has run against this database: its lag is unknown, not zero
    assert notifier["lag"]["total_lag"] is None


async def test_submit_from_the_cli_carries_its_callback_url(
    private_api: Api, jfk_flac: Path
) -> None:
    callback = "http://localhost:9/hook?from=cli"
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "whisperstream.cli.main",
            "submit",
            str(jfk_flac),
            "--callback-url",
            callback,
            "--api-url",
            str(private_api.client.make_url("/")),
            "--api-key",
            private_api.user_key,
        ],
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    events = read_topic(private_api.settings, private_api.settings.topic_requests_normal)
    [request] = [e for e in events if isinstance(e, TranscriptionRequested)]
    assert request.callback_url == callback
