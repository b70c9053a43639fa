"""Uploads in the ISO base media container: audio passes, HEIC and AVIF images do not."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.integration.api.conftest import Api
from tests.support.images import HEIC_HEAD, RED_AVIF

pytestmark = pytest.mark.integration


async def _submit(api: Api, content: bytes, filename: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(content), filename=filename, content_type="audio/mp4")
    return await api.client.post("/transcribe", data=form, headers=api.auth())


@pytest.fixture(params=["avif", "heic"])
def iso_image(request: pytest.FixtureRequest) -> tuple[bytes, str]:
    """An image in the ISO container, and the kind the API must name it."""
    if request.param == "avif":
        return RED_AVIF.read_bytes(), "an AVIF image"
    return HEIC_HEAD + bytes(256), "a HEIC image"


async def test_iso_images_are_refused_with_a_problem(
    api: Api, iso_image: tuple[bytes, str]
) -> None:
    content, kind = iso_image
    response = await _submit(api, content, "photo.m4a")
    assert response.status == 415, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 415
    assert body["received"] == kind
    assert kind in body["detail"]


@pytest.fixture(params=["ipod", "3gp", "mp4", "mov"])
def iso_audio(request: pytest.FixtureRequest, jfk_flac: Path, tmp_path: Path) -> tuple[bytes, str]:
    """Real speech as AAC in each ISO container ffmpeg writes (ipod is M4A)."""
    muxer: str = request.param
    encoded = tmp_path / f"jfk.{muxer}"
    ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    subprocess.run(
        [*ffmpeg, "-i", str(jfk_flac), "-t", "2", "-c:a", "aac", "-f", muxer, str(encoded)],
        check=True,
        timeout=60,
    )
    return encoded.read_bytes(), encoded.name


async def test_iso_audio_is_accepted(api: Api, iso_audio: tuple[bytes, str]) -> None:
    response = await _submit(api, *iso_audio)
    assert response.status == 202, await response.text()
