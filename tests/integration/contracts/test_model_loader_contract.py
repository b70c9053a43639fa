"""The model pool's ports, `ModelLoader` and the `Transcriber`s it loads: the pool tests'
`FakeLoader`, the job tests' `ScriptedLoader` and the real `EngineLoader` with the
offline models (both engines, in this process) keep one contract; every test runs
against each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stream_workers import audio
from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    Transcriber,
    TranscribeRequest,
)
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from stream_workers.pool import ModelLoader
from tests.support.model_fakes import BASE, FakeLoader, ScriptedLoader, ScriptedModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Side:
    loader: ModelLoader
    key: ModelKey
    """A model this loader can load."""


@pytest.fixture(scope="module", params=["fake", "scripted", "faster-whisper", "openai-whisper"])
def side(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Side:
    if request.param == "fake":
        return Side(FakeLoader(), BASE)
    if request.param == "scripted":
        key = ModelKey("faster-whisper", "tiny.en", "int8")
        return Side(ScriptedLoader(ScriptedModel(key)), key)
    loader = EngineLoader(ModelCatalog(None, tmp_path_factory.mktemp("model-cache")))
    return Side(loader, loader.key_for(request.param, "tiny.en"))


@pytest.fixture(scope="module")
def model(side: Side) -> Iterator[Transcriber]:
    loaded = side.loader.load(side.key)
    try:
        yield loaded
    finally:
        loaded.close()


@pytest.fixture(scope="module")
def speech(jfk_flac: Path) -> Samples:
    """The first 5.5 s of jfk.flac: not the 11 s a fake might assume."""
    return audio.decode(jfk_flac, max_seconds=60)[: int(5.5 * SAMPLE_RATE)]


class StopRequestedError(Exception):
    """What a cancel raises from the segment callback."""


def test_a_loaded_model_is_of_the_key_asked_for(side: Side, model: Transcriber) -> None:
    assert model.key == side.key


def test_the_result_covers_the_audio_and_progress_never_passes_it(
    model: Transcriber, speech: Samples
) -> None:
    progress: list[tuple[float, float]] = []
    result = model.transcribe(speech, TranscribeRequest(), lambda d, t: progress.append((d, t)))
    assert result.duration == pytest.approx(5.5, abs=0.05)
    assert progress, "no progress reported"
    assert all(total == pytest.approx(result.duration) for _, total in progress)
    done = [d for d, _ in progress]
    assert done == sorted(done)
    assert 0 < done[-1] <= result.duration + 1e-6
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        assert 0 <= segment.start <= segment.end <= result.duration + 0.5


def test_an_error_raised_from_the_progress_callback_stops_it_and_comes_out(
    model: Transcriber, speech: Samples
) -> None:
    def cancel(_done: float, _total: float) -> None:
        raise StopRequestedError

    with pytest.raises(StopRequestedError):
        model.transcribe(speech, TranscribeRequest(), cancel)


def test_windows_decoded_together_each_get_their_own_segments(
    model: Transcriber, speech: Samples
) -> None:
    silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    windows = [speech, silence, speech[: 3 * SAMPLE_RATE]]
    transcripts = model.transcribe_windows(windows, TranscribeRequest(language="en"))
    assert len(transcripts) == len(windows)
    for window, transcript in zip(windows, transcripts, strict=True):
        seconds = len(window) / SAMPLE_RATE
        for segment in transcript.segments:
            assert 0 <= segment.start <= segment.end <= seconds + 0.5
    assert model.transcribe_windows([], TranscribeRequest(language="en")) == []


def test_memory_estimates_are_positive_and_fallbacks_smaller(side: Side) -> None:
    key: ModelKey | None = side.key
    seen: list[ModelKey] = []
    while key is not None:
        assert key not in seen, f"fallback cycle: {seen}"
        seen.append(key)
        assert side.loader.estimate_mb(key) > 0
        fallback = side.loader.smaller(key)
        if fallback is not None:
            assert (fallback.engine, fallback.compute_type) == (key.engine, key.compute_type)
            assert side.loader.estimate_mb(fallback) < side.loader.estimate_mb(key)
        key = fallback
