"""A job submitted with a callback_url is transcribed by the real worker and called back
by the notifier under `up`; the callback verifies with the key's secret from `keys create`."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from standardwebhooks import Webhook

from tests.integration.notifier.receiver import Received, Receiver
from tests.support.audio import JFK_FLAC
from tests.support.system import System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


async def _wait_for_callback(receiver: Receiver, path: str, within_s: float) -> Received:
    deadline = time.monotonic() + within_s
    while not receiver.of(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"no callback to {path} within {within_s}s")
        await asyncio.sleep(0.2)
    return receiver.of(path)[0]


async def test_a_completed_job_is_called_back_signed_with_its_keys_secret(system: System) -> None:
    created = await asyncio.to_thread(system.cli, "keys", "create", "webhook-e2e")
    assert created.returncode == 0, created.stderr
    key, secret = created.stdout.split()
    receiver = Receiver()
    await receiver.start()
    try:

        def submit() -> str:
            with system.http(key) as client, JFK_FLAC.open("rb") as audio:
                response = client.post(
                    "/transcribe",
                    files={"file": ("jfk.flac", audio, "audio/flac")},
                    data={"model": "tiny.en", "callback_url": receiver.to("/done")},
                )
            assert response.status_code == 202, response.text
            job_id: str = response.json()["job_id"]
            return job_id

        job_id = await asyncio.to_thread(submit)
        got = await _wait_for_callback(receiver, "/done", 300)
    finally:
        await receiver.stop()
    body = Webhook(secret).verify(got.body, got.headers)
    assert body["type"] == "transcription.completed"
    assert body["job_id"] == job_id
    assert "ask not" in body["result"]["text"].lower()
    assert body["links"]["job"] == f"{system.api_url}/transcribe/{job_id}"

    def recorded() -> list[tuple[str, str]]:
        """The job's attempts over the API, once the answer is recorded."""
        deadline = time.monotonic() + 60
        with system.http(key) as client:
            while True:
                response = client.get(f"/transcribe/{job_id}/deliveries")
                assert response.status_code == 200, response.text
                rows = [(d["webhook_id"], d["status"]) for d in response.json()["deliveries"]]
                if (rows and rows[-1][1] != "pending") or time.monotonic() > deadline:
                    return rows
                time.sleep(0.3)

    assert await asyncio.to_thread(recorded) == [(got.webhook_id, "succeeded")]


async def test_the_admin_keys_callbacks_are_signed_with_the_secret_up_printed(
    system: System,
) -> None:
    printed = re.search(
        r"webhook secret of the admin key's callbacks: (whsec_\S+)", system.log_path.read_text()
    )
    assert printed is not None
    receiver = Receiver()
    await receiver.start()
    try:

        def submit() -> str:
            with system.http() as client, JFK_FLAC.open("rb") as audio:
                response = client.post(
                    "/transcribe",
                    files={"file": ("jfk.flac", audio, "audio/flac")},
                    data={"model": "tiny.en", "callback_url": receiver.to("/admin")},
                )
            assert response.status_code == 202, response.text
            job_id: str = response.json()["job_id"]
            return job_id

        job_id = await asyncio.to_thread(submit)
        got = await _wait_for_callback(receiver, "/admin", 300)
    finally:
        await receiver.stop()
    assert Webhook(printed.group(1)).verify(got.body, got.headers)["job_id"] == job_id
