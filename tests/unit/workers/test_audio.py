"""Decoding once, in process: the samples the engines get, repair, and the duration limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.audio import decode_audio

from stream_workers import audio
from stream_workers.errors import AudioTooLongError, AudioUndecodableError


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".wav"])
def test_samples_are_exactly_what_the_engine_would_decode_itself(
    jfk_flac: Path, tmp_path: Path, suffix: str
) -> None:
    source = jfk_flac
    if suffix != ".flac":
        source = tmp_path / f"jfk{suffix}"
        # 44.1 kHz stereo, so the resampling and the downmix are exercised too
        command = ["ffmpeg", "-v", "error", "-i", str(jfk_flac), "-ar", "44100", "-ac", "2"]
        subprocess.run([*command, str(source)], check=True)
    samples = audio.decode(source, max_seconds=60)
    assert samples.dtype == np.float32
    assert np.array_equal(samples, decode_audio(str(source)))
    assert audio.header_duration(source) == pytest.approx(11.0, abs=0.05)


def test_prepare_gives_the_decoded_audio_and_its_duration(jfk_flac: Path, tmp_path: Path) -> None:
    decoded = audio.prepare(jfk_flac, tmp_path, max_seconds=60)
    assert decoded.duration == pytest.approx(11.0)
    assert not decoded.repaired


def test_audio_over_the_limit_is_refused_by_its_header_before_decoding(
    jfk_flac: Path, tmp_path: Path
) -> None:
    with pytest.raises(AudioTooLongError, match="11s, over MAX_AUDIO_DURATION_S=5"):
        audio.prepare(jfk_flac, tmp_path, max_seconds=5)


def test_decoding_stops_as_soon_as_the_limit_is_passed(jfk_flac: Path) -> None:
    # a header can lie (or be missing); the decoder counts for itself
    with pytest.raises(AudioTooLongError):
        audio.decode(jfk_flac, max_seconds=5)


def test_truncated_audio_gives_what_is_there(jfk_flac: Path, tmp_path: Path) -> None:
    data = jfk_flac.read_bytes()
    truncated = tmp_path / "half.flac"
    truncated.write_bytes(data[: len(data) // 2])
    decoded = audio.prepare(truncated, tmp_path, max_seconds=60)
    assert 3.0 < decoded.duration < 8.0


@pytest.mark.parametrize(
    "content",
    [b"this is not audio at all" * 100, b"fLaC" + bytes(range(256)) * 400],
    ids=["text", "flac-magic-then-garbage"],
)
def test_undecodable_audio_is_refused_after_a_repair_attempt(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad.flac"
    path.write_bytes(content)
    with pytest.raises(AudioUndecodableError, match="after ffmpeg repair"):
        audio.prepare(path, tmp_path, max_seconds=60)
