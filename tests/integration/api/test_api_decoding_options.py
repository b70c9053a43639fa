"""beam_size, temperature and vad_filter through the real API (and the CLI) into the event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schemas.events import TranscriptionOptions, TranscriptionRequested
from storage.keys import S3Uri
from tests.integration.api.conftest import Api, read_topic
from tests.integration.api.helpers import form

pytestmark = pytest.mark.integration


def _requests(api: Api) -> list[TranscriptionRequested]:
    events = read_topic(api.settings, api.settings.topic_requests_normal)
    return [e for e in events if isinstance(e, TranscriptionRequested)]


async def _stored_audio(api: Api, content: bytes) -> str:
    uri = S3Uri(api.settings.audio_bucket, f"uploads/{uuid.uuid4()}/jfk.flac")
    await asyncio.to_thread(api.store.put_bytes, uri, content, "audio/flac")
    return str(uri)


async def test_form_fields_land_in_the_event(api: Api, jfk_bytes: bytes) -> None:
    fields = {"beam_size": "3", "temperature": "0.4", "vad_filter": "true"}
    response = await api.client.post(
        "/transcribe", data=form(jfk_bytes, **fields), headers=api.auth()
    )
    assert response.status == 202, await response.text()
    [event] = _requests(api)
    assert event.options == TranscriptionOptions(beam_size=3, temperature=0.4, vad_filter=True)


async def test_json_body_fields_land_in_the_event(api: Api, jfk_bytes: bytes) -> None:
    body = {
        "audio_uri": await _stored_audio(api, jfk_bytes),
        "beam_size": 10,
        "temperature": 1,
        "vad_filter": True,
    }
    response = await api.client.post("/transcribe", json=body, headers=api.auth())
    assert response.status == 202, await response.text()
    [event] = _requests(api)
    assert event.options == TranscriptionOptions(beam_size=10, temperature=1.0, vad_filter=True)


async def test_omitted_options_leave_the_defaults_to_the_worker(api: Api, jfk_bytes: bytes) -> None:
    response = await api.client.post("/transcribe", data=form(jfk_bytes), headers=api.auth())
    assert response.status == 202
    [event] = _requests(api)
    # null beam: the workers' one default; temperature 0 alone; no VAD
    assert event.options == TranscriptionOptions()


BAD_VALUES = [
    ("beam_size", "0"),
    ("beam_size", "11"),
    ("beam_size", "2.5"),
    ("beam_size", "wide"),
    ("temperature", "-0.1"),
    ("temperature", "1.5"),
    ("temperature", "inf"),
    ("vad_filter", "sometimes"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
async def test_a_bad_form_value_is_a_422_naming_the_field(
    api: Api, jfk_bytes: bytes, name: str, value: str
) -> None:
    response = await api.client.post(
        "/transcribe", data=form(jfk_bytes, **{name: value}), headers=api.auth()
    )
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == [name]
    assert name in problem["detail"]
    assert _requests(api) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("beam_size", 0),
        ("beam_size", 11),
        ("beam_size", True),
        ("temperature", 1.01),
        ("temperature", -1),
        ("temperature", "warm"),
        ("vad_filter", 1),
        ("vad_filter", "x"),
    ],
)
async def test_a_bad_json_value_is_a_422_naming_the_field(
    api: Api, jfk_bytes: bytes, name: str, value: object
) -> None:
    body = {"audio_uri": await _stored_audio(api, jfk_bytes), name: value}
    response = await api.client.post("/transcribe", json=body, headers=api.auth())
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == [name]
    assert _requests(api) == []


async def test_openapi_shows_the_options_and_their_ranges(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    document = await response.json()
    body = document["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    for content_type in ("multipart/form-data", "application/json"):
        properties = body[content_type]["schema"]["properties"]
        assert properties["beam_size"]["type"] == "integer"
        assert (properties["beam_size"]["minimum"], properties["beam_size"]["maximum"]) == (1, 10)
        assert properties["temperature"]["type"] == "number"
        assert (properties["temperature"]["minimum"], properties["temperature"]["maximum"]) == (
            0,
            1,
        )
        assert properties["vad_filter"]["type"] == "boolean"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", "submit", *args],
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_flags_land_in_the_event(api: Api, jfk_flac: Path) -> None:
    url = str(api.client.make_url("/"))
    done = await asyncio.to_thread(
        _cli,
        str(jfk_flac),
        "--beam-size",
        "4",
        "--temperature",
        "0.6",
        "--vad-filter",
        "--api-url",
        url,
        "--api-key",
        api.user_key,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [event] = _requests(api)
    assert event.options == TranscriptionOptions(beam_size=4, temperature=0.6, vad_filter=True)


async def test_cli_refuses_an_out_of_range_flag_before_sending(api: Api, jfk_flac: Path) -> None:
    url = str(api.client.make_url("/"))
    done = await asyncio.to_thread(
        _cli, str(jfk_flac), "--beam-size", "11", "--api-url", url, "--api-key", api.user_key
    )
    assert done.returncode == 2
    assert "--beam-size" in done.stderr
    assert _requests(api) == []
