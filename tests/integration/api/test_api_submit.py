from __future__ import annotations

import hashlib
import io
import uuid

import aiohttp
import pytest

from schemas.events import Priority, TranscriptionRequested
from storage.keys import S3Uri
from tests.integration.api.conftest import Api, read_topic

pytestmark = pytest.mark.integration


def _form(content: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", io.BytesIO(content), filename="jfk.flac", content_type="audio/flac")
    return form


async def test_upload_is_stored_published_and_readable_at_once(api: Api, jfk_bytes: bytes) -> None:
    response = await api.client.post(
        "/transcribe",
        data=_form(jfk_bytes, language="en", word_timestamps="true", model="tiny.en"),
        headers=api.auth(),
    )
    assert response.status == 202, await response.text()
    body = await response.json()
    job_id = body["job_id"]
    assert body["status"] == "pending"
    assert body["links"]["self"] == f"/transcribe/{job_id}"
    assert response.headers["Location"] == f"/transcribe/{job_id}"

    # read-your-writes: no projector runs here, the API folded its own event
    status = await api.client.get(f"/transcribe/{job_id}", headers=api.auth())
    assert status.status == 200
    job = await status.json()
    content = jfk_bytes
    assert job["status"] == "pending"
    assert job["priority"] == "normal"
    assert job["model"] == "tiny.en"
    assert job["language"] == "en"
    assert job["size_bytes"] == len(content)
    assert job["sha256"] == hashlib.sha256(content).hexdigest()
    assert job["original_filename"] == "jfk.flac"

    uri = S3Uri.parse(job["audio_uri"])
    assert uri == S3Uri(api.settings.audio_bucket, f"uploads/{job_id}/jfk.flac")
    assert api.store.get_bytes(uri) == content

    events = read_topic(api.settings, api.settings.topic_requests_normal)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, TranscriptionRequested)
    assert event.job_id == job_id
    assert event.audio.sha256 == job["sha256"]
    assert event.audio.content_type == "audio/flac"
    assert event.options.word_timestamps is True
    assert event.owner is not None


async def test_high_priority_goes_to_the_high_topic(api: Api, jfk_bytes: bytes) -> None:
    response = await api.client.post(
        "/transcribe/", data=_form(jfk_bytes, priority="high"), headers={"X-API-Key": api.user_key}
    )
    assert response.status == 202
    events = read_topic(api.settings, api.settings.topic_requests_high)
    assert [e.priority for e in events if isinstance(e, TranscriptionRequested)] == [Priority.HIGH]


async def test_idempotency_key_returns_the_same_job_and_publishes_once(
    api: Api, jfk_bytes: bytes
) -> None:
    headers = {**api.auth(), "Idempotency-Key": "order-42"}
    first = await api.client.post("/transcribe", data=_form(jfk_bytes), headers=headers)
    second = await api.client.post("/transcribe", data=_form(jfk_bytes), headers=headers)
    assert first.status == second.status == 202
    job_id = (await first.json())["job_id"]
    assert (await second.json())["job_id"] == job_id
    assert second.headers["Idempotent-Replayed"] == "true"

    other_headers = {**api.auth(api.other_key), "Idempotency-Key": "order-42"}
    third = await api.client.post("/transcribe", data=_form(jfk_bytes), headers=other_headers)
    assert (await third.json())["job_id"] != job_id

    events = read_topic(api.settings, api.settings.topic_requests_normal)
    assert sorted(e.job_id for e in events if isinstance(e, TranscriptionRequested)) == sorted(
        [job_id, (await third.json())["job_id"]]
    )
    keys = api.store.list_keys(api.settings.audio_bucket, f"uploads/{job_id}/")
    assert keys == [f"uploads/{job_id}/jfk.flac"]


async def test_json_body_with_an_existing_object(api: Api, jfk_bytes: bytes) -> None:
    key = f"incoming/{uuid.uuid4()}/talk.flac"
    api.store.put_bytes(S3Uri(api.settings.audio_bucket, key), jfk_bytes)
    response = await api.client.post(
        "/transcribe",
        json={"audio_uri": f"s3://{api.settings.audio_bucket}/{key}", "task": "translate"},
        headers=api.auth(),
    )
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    job = await (await api.client.get(f"/transcribe/{job_id}", headers=api.auth())).json()
    assert job["audio_uri"] == f"s3://{api.settings.audio_bucket}/{key}"
    assert job["task"] == "translate"
    assert job["size_bytes"] == len(jfk_bytes)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"audio_uri": "s3://audio/uploads/none/missing.wav"}, "audio_uri", "no such object"),
        ({"audio_uri": "s3://other-bucket/a.wav"}, "audio_uri", "not allowed"),
        ({"audio_uri": "http://x/a.wav"}, "audio_uri", "must start with s3://"),
        ({}, "audio_uri", "required"),
        ({"audio_uri": "s3://audio/a.wav", "priority": "urgent"}, "priority", "one of"),
        ({"audio_uri": "s3://audio/a.wav", "colour": "red"}, "colour", "unknown field"),
    ],
)
async def test_json_body_errors_name_the_field(
    api: Api, body: dict[str, str], field: str, fragment: str
) -> None:
    if body.get("audio_uri", "").startswith("s3://audio/"):
        body = {
            **body,
            "audio_uri": body["audio_uri"].replace("audio", api.settings.audio_bucket, 1),
        }
    response = await api.client.post("/transcribe", json=body, headers=api.auth())
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["errors"][0]["field"] == field
    assert fragment in problem["errors"][0]["message"]
