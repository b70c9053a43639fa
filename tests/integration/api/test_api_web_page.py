"""Issue 15's server side: the page and its files at / and /web/, the owner-checked
presigned audio URL, and the admin redrive of one dead letter."""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from schemas.codec import EventCodec
from schemas.events import TranscriptionRequested
from storage.keys import S3Uri
from tests.integration.api.conftest import Api, read_topic, start_api
from tests.integration.api.helpers import dead_letter, project, submit
from tests.support.kafka_read import records_to_end
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

WEB_DIR = Path(__file__).resolve().parents[3] / "producer_api" / "web"
PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


async def test_the_page_and_every_file_of_it_are_served_without_a_key(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert '<script type="module" src="/web/app.js">' in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    files = sorted(p for p in WEB_DIR.iterdir() if p.suffix in types)
    assert {p.name for p in files} >= {"app.js", "api.js", "style.css"}
    for path in files:
        served = await api.client.get(f"/web/{path.name}")
        assert served.status == 200, path.name
        assert served.content_type == types[path.suffix]
        assert await served.read() == path.read_bytes()
    # the Swagger UI is still at /docs
    assert (await api.client.get("/docs")).status == 200


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2Fapp.py", "index.html.bak", "APP.JS", ".hidden.js"]
)
async def test_only_the_pages_own_files_are_served(api: Api, name: str) -> None:
    response = await api.client.get(f"/web/{name}")
    assert response.status == 404


def test_the_wheel_carries_every_file_of_the_page() -> None:
    """pyproject's package data must name each file, or an installed API serves no page."""
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    page_patterns = patterns["producer_api"]
    for path in WEB_DIR.iterdir():
        relative = f"web/{path.name}"
        assert any(fnmatch(relative, p) for p in page_patterns), relative


async def test_the_audio_url_plays_the_owners_upload_and_no_one_elses(
    api: Api, jfk_bytes: bytes
) -> None:
    job_id = await submit(api, jfk_bytes)
    (request,) = [
        e
        for e in read_topic(api.settings, api.settings.topic_for_priority("normal"))
        if isinstance(e, TranscriptionRequested) and e.job_id == job_id
    ]
    await project(api, api.settings.topic_for_priority("normal"), request)

    assert (await api.client.get(f"/transcribe/{job_id}/audio")).status == 401
    other = await api.client.get(f"/transcribe/{job_id}/audio", headers=api.auth(api.other_key))
    assert other.status == 404

    response = await api.client.get(f"/transcribe/{job_id}/audio", headers=api.auth())
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["size_bytes"] == len(jfk_bytes)
    assert body["url"].startswith(api.settings.s3_endpoint + "/")
    async with httpx.AsyncClient() as browser:  # no key: the signature is the permission
        whole = await browser.get(body["url"])
        assert whole.status_code == 200
        assert whole.content == jfk_bytes
        # a player seeks with range requests
        part = await browser.get(body["url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == jfk_bytes[100:200]
    admin = await api.client.get(f"/transcribe/{job_id}/audio", headers=api.auth(api.admin_key))
    assert admin.status == 200

    await asyncio.to_thread(api.store.delete, S3Uri.parse(request.audio.uri))
    gone = await api.client.get(f"/transcribe/{job_id}/audio", headers=api.auth())
    assert gone.status == 404
    assert "no longer stored" in (await gone.json())["detail"]


async def test_a_dead_letter_is_redriven_as_a_new_job(api: Api, jfk_bytes: bytes) -> None:
    job_id = await submit(api, jfk_bytes)
    topic = api.settings.topic_for_priority("normal")
    with EventCodec() as codec:
        raw = next(
            value
            for _, _, value in records_to_end(api.settings.kafka_bootstrap_servers, topic)
            if value is not None and codec.decode(value, TranscriptionRequested).job_id == job_id
        )
    letter = dataclasses.replace(dead_letter("ModelLoadError", 7, job_id), original_value=raw)
    undecodable = dead_letter("AudioDecodeError", 8)
    await project(api, api.settings.topic_dlq, letter, undecodable)
    headers = api.auth(api.admin_key)
    listed = await (await api.client.get("/admin/errors?resolved=false", headers=headers)).json()
    ids = {e["job_id"]: e["id"] for e in listed["items"]}

    user = await api.client.post(f"/admin/errors/{ids[job_id]}/redrive", headers=api.auth())
    assert user.status == 403
    redriven = await api.client.post(f"/admin/errors/{ids[job_id]}/redrive", headers=headers)
    assert redriven.status == 200, await redriven.text()
    body = await redriven.json()
    assert body["failed_job_id"] == job_id
    assert body["outcome"] == "redriven"
    published = [
        e
        for e in read_topic(api.settings, topic)
        if isinstance(e, TranscriptionRequested) and e.job_id == body["new_job_id"]
    ]
    assert len(published) == 1
    assert published[0].correlation_id == job_id
    after = await (await api.client.get("/admin/errors?resolved=false", headers=headers)).json()
    assert job_id not in {e["job_id"] for e in after["items"]}

    refused = await api.client.post(
        f"/admin/errors/{ids[undecodable.job_id]}/redrive", headers=headers
    )
    assert refused.status == 409
    assert "holds no request" in (await refused.json())["detail"]
    missing = await api.client.post("/admin/errors/999999/redrive", headers=headers)
    assert missing.status == 404


async def test_audio_urls_name_the_public_s3_endpoint_when_one_is_set(
    api_settings: Settings, jfk_bytes: bytes
) -> None:
    """Behind Compose, S3_ENDPOINT is an internal name; browsers get S3_PUBLIC_ENDPOINT."""
    public = api_settings.s3_endpoint.replace("127.0.0.1", "localhost")
    assert public != api_settings.s3_endpoint
    settings = api_settings.model_copy(update={"s3_public_endpoint": public})
    client, engine, store, (user, other, admin) = await start_api(settings)
    api = Api(client, settings, engine, store, user, other, admin)
    try:
        job_id = await submit(api, jfk_bytes)
        (request,) = [
            e
            for e in read_topic(settings, settings.topic_for_priority("normal"))
            if isinstance(e, TranscriptionRequested) and e.job_id == job_id
        ]
        await project(api, settings.topic_for_priority("normal"), request)
        response = await client.get(f"/transcribe/{job_id}/audio", headers=api.auth())
        assert response.status == 200, await response.text()
        url = (await response.json())["url"]
        assert url.startswith(public + "/")
        async with httpx.AsyncClient() as browser:  # signed for that host, so it plays
            fetched = await browser.get(url)
        assert fetched.status_code == 200
        assert fetched.content == jfk_bytes
    finally:
        await client.close()
        store.close()
        await engine.dispose()
