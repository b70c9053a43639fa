"""The decoding options reach each engine and change what it does (real tiny.en models)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.events import TranscriptionOptions
from stream_workers import audio
from stream_workers.engines.base import SAMPLE_RATE, Samples, Transcriber, TranscribeRequest
from stream_workers.engines.decoding import BEST_OF, DEFAULT_BEAM_SIZE, Decoding
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from tests.support.audio import JFK_REFERENCE, word_error_rate

SILENCE_S = 35.0
"""Longer than one 30 s window, so without VAD a whole window is silence."""
ENGINES = ("faster-whisper", "openai-whisper")


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> EngineLoader:
    return EngineLoader(ModelCatalog(None, tmp_path_factory.mktemp("model-cache")))


@pytest.fixture(scope="module", params=ENGINES)
def model(request: pytest.FixtureRequest, loader: EngineLoader) -> Iterator[Transcriber]:
    loaded = loader.load(loader.key_for(request.param, "tiny.en"))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def silence_then_jfk(jfk_flac: Path) -> Samples:
    speech = audio.decode(jfk_flac, max_seconds=60)
    silence = np.zeros(int(SILENCE_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([silence, speech])


def _quiet(_done: float, _total: float) -> None:
    return None


def test_vad_filter_transcribes_only_the_speech_at_its_original_time(
    model: Transcriber, silence_then_jfk: Samples
) -> None:
    plain = model.transcribe(silence_then_jfk, TranscribeRequest(), _quiet)
    vad = TranscribeRequest(decoding=Decoding(vad_filter=True, word_timestamps=True))
    filtered = model.transcribe(silence_then_jfk, vad, _quiet)
    # without VAD the engine decodes the silence too (tiny.en hears a "You" in it)
    assert plain.segments[0].start < SILENCE_S - 1
    # with it, only the speech, with times mapped back onto the whole audio
    assert filtered.segments
    assert all(s.start >= SILENCE_S - 0.5 for s in filtered.segments), filtered.segments
    assert filtered.words is not None
    assert all(w.start >= SILENCE_S - 0.5 for w in filtered.words)
    assert word_error_rate(JFK_REFERENCE, filtered.text) <= 0.1, filtered.text
    assert filtered.duration == pytest.approx(SILENCE_S + 11.0, abs=0.1)


def test_vad_filter_on_silence_alone_gives_no_segments(model: Transcriber) -> None:
    silence = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    vad = TranscribeRequest(decoding=Decoding(vad_filter=True))
    result = model.transcribe(silence, vad, _quiet)
    assert result.segments == ()
    assert result.duration == pytest.approx(10.0)


def test_vad_filter_cuts_the_same_speech_on_both_engines(
    loader: EngineLoader, silence_then_jfk: Samples
) -> None:
    vad = TranscribeRequest(decoding=Decoding(vad_filter=True))
    starts = []
    for engine in ENGINES:
        model = loader.load(loader.key_for(engine, "tiny.en"))
        try:
            starts.append(model.transcribe(silence_then_jfk, vad, _quiet).segments[0].start)
        finally:
            model.close()
    assert starts[0] == pytest.approx(starts[1], abs=0.05)


def _spy(function: Any, calls: list[dict[str, Any]]) -> Any:
    """`function`, recording the keyword arguments of each call (a plain function, so it
    still binds as a method when set on a class)."""

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return function(*args, **kwargs)

    return spy


def test_beam_size_and_temperature_reach_each_library_alike(
    loader: EngineLoader, jfk_flac: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faster_whisper  # noqa: PLC0415 - the libraries themselves, to watch their calls
    import whisper  # noqa: PLC0415

    faster_calls: list[dict[str, Any]] = []
    openai_calls: list[dict[str, Any]] = []
    faster = _spy(faster_whisper.WhisperModel.transcribe, faster_calls)
    monkeypatch.setattr(faster_whisper.WhisperModel, "transcribe", faster)
    monkeypatch.setattr(whisper, "transcribe", _spy(whisper.transcribe, openai_calls))
    samples = audio.decode(jfk_flac, max_seconds=60)
    defaults = TranscribeRequest(decoding=Decoding.of(TranscriptionOptions()))
    chosen = TranscribeRequest(
        decoding=Decoding.of(TranscriptionOptions(beam_size=3, temperature=0.2))
    )
    texts = []
    for engine in ENGINES:
        model = loader.load(loader.key_for(engine, "tiny.en"))
        try:
            texts.append(model.transcribe(samples, defaults, _quiet).text)
            model.transcribe(samples, chosen, _quiet)
        finally:
            model.close()
    for calls in (faster_calls, openai_calls):
        settings = [(call["beam_size"], call["temperature"], call["best_of"]) for call in calls]
        # null beam: the one default on both engines, not openai-whisper's greedy search
        assert settings == [(DEFAULT_BEAM_SIZE, 0.0, BEST_OF), (3, 0.2, BEST_OF)]
    assert all(word_error_rate(JFK_REFERENCE, text) <= 0.05 for text in texts), texts
