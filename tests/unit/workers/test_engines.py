"""Both engines on real speech with the offline models, and the exact CT2 conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_workers import audio
from stream_workers.config import default_cpu_threads, load_tuning
from stream_workers.engines.base import ModelKey, Samples, TranscribeRequest
from stream_workers.engines.decoding import Decoding
from stream_workers.engines.faster import FasterWhisperTranscriber
from stream_workers.engines.loader import EngineLoader
from stream_workers.engines.openai import OpenAIWhisperTranscriber
from stream_workers.errors import (
    ConversionError,
    JobCancelledError,
    ModelNotInstalledError,
    is_out_of_memory,
)
from stream_workers.models.catalog import ModelCatalog
from tests.support.audio import JFK_REFERENCE, word_error_rate


def test_word_error_rate_counts_edits() -> None:
    assert word_error_rate("a b c d", "a b c d") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> ModelCatalog:
    return ModelCatalog(None, tmp_path_factory.mktemp("model-cache"))


def _no_progress(_done: float, _total: float) -> None:
    return None


@pytest.fixture(scope="module")
def jfk_samples(jfk_flac: Path) -> Samples:
    return audio.decode(jfk_flac, max_seconds=60)


ENGINE_PLACES = [
    pytest.param(engine, place, id=f"{engine}-{place}")
    for engine in ("faster-whisper", "openai-whisper")
    for place in ("in-process", "own-process")
]


def loader_for(catalog: ModelCatalog, engine: str, place: str) -> EngineLoader:
    return EngineLoader(
        catalog, process_engines=frozenset({engine}) if place == "own-process" else frozenset()
    )


@pytest.mark.parametrize(("engine", "place"), ENGINE_PLACES)
def test_each_engine_gives_the_reference_words(
    catalog: ModelCatalog, jfk_samples: Samples, engine: str, place: str
) -> None:
    loader = loader_for(catalog, engine, place)
    model = loader.load(loader.key_for(engine, "tiny.en"))
    progress: list[float] = []
    try:
        result = model.transcribe(
            jfk_samples,
            TranscribeRequest(decoding=Decoding(word_timestamps=True)),
            lambda done, total: progress.append(done / total),
        )
    finally:
        model.close()
    assert word_error_rate(JFK_REFERENCE, result.text) <= 0.05, result.text
    assert result.language == "en"
    assert result.language_probability == pytest.approx(1.0)
    assert result.duration == pytest.approx(11.0, abs=0.1)
    assert result.words is not None
    assert len(result.words) >= 20
    assert progress
    assert progress[-1] == pytest.approx(1.0, abs=0.05)


def test_converted_checkpoint_gives_the_same_tokens_as_faster_whisper(
    catalog: ModelCatalog, tmp_path: Path, jfk_samples: Samples
) -> None:
    source = catalog.resolve("faster-whisper", "tiny.en")
    checkpoint = catalog.import_ct2(source, "tiny-imported")
    assert checkpoint.exists()
    greedy = TranscribeRequest(decoding=Decoding(beam_size=1))
    fast = FasterWhisperTranscriber(ModelKey("faster-whisper", "tiny.en", "float32"), source)
    slow = OpenAIWhisperTranscriber(
        ModelKey("openai-whisper", "tiny-imported", "float32"), checkpoint
    )
    try:
        fast_tokens = [
            s.tokens for s in fast.transcribe(jfk_samples, greedy, _no_progress).segments
        ]
        slow_tokens = [
            s.tokens for s in slow.transcribe(jfk_samples, greedy, _no_progress).segments
        ]
    finally:
        fast.close()
        slow.close()
    assert fast_tokens == slow_tokens
    assert sum(len(t) for t in fast_tokens) > 20


def test_multilingual_base_pack_is_assembled_once_and_detects_english(
    catalog: ModelCatalog, jfk_samples: Samples
) -> None:
    path = catalog.resolve("faster-whisper", "base")
    assert (path / "model.bin").stat().st_size == 2 * 72608766
    assert catalog.resolve("faster-whisper", "base") == path
    model = FasterWhisperTranscriber(ModelKey("faster-whisper", "base", "int8"), path)
    try:
        result = model.transcribe(jfk_samples, TranscribeRequest(), _no_progress)
    finally:
        model.close()
    assert result.language == "en"
    assert result.language_probability > 0.5
    assert word_error_rate(JFK_REFERENCE, result.text) <= 0.05


@pytest.mark.parametrize(("engine", "place"), ENGINE_PLACES)
def test_raising_from_the_segment_callback_stops_the_engine(
    catalog: ModelCatalog, jfk_samples: Samples, engine: str, place: str
) -> None:
    loader = loader_for(catalog, engine, place)
    model = loader.load(loader.key_for(engine, "tiny.en"))
    calls: list[float] = []

    def cancel(done: float, _total: float) -> None:
        calls.append(done)
        raise JobCancelledError("cancelled")

    try:
        with pytest.raises(JobCancelledError):
            model.transcribe(jfk_samples, TranscribeRequest(), cancel)
    finally:
        model.close()
    assert len(calls) == 1


def test_unknown_model_names_what_would_install_it(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelNotInstalledError, match=r"'large-v3'.*WHISPER_MODEL_DIR.*tiny\.en"):
        catalog.resolve("faster-whisper", "large-v3")
    with pytest.raises(ModelNotInstalledError, match="import-ct2"):
        catalog.resolve("openai-whisper", "medium")
    with pytest.raises(ModelNotInstalledError, match="not a valid model name"):
        catalog.resolve("faster-whisper", "../etc")


def test_smaller_model_walks_down_the_installed_family(tmp_path: Path) -> None:
    for name in ("small.en", "medium.en"):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "model.bin").write_bytes(b"")
    catalog = ModelCatalog(tmp_path / "models", tmp_path / "cache")
    assert catalog.smaller("faster-whisper", "medium.en") == "small.en"
    assert catalog.smaller("faster-whisper", "small.en") == "tiny.en"  # base.en is absent
    assert catalog.smaller("faster-whisper", "tiny.en") is None
    assert catalog.smaller("faster-whisper", "base") is None  # tiny is not installed


def test_conversion_refuses_what_is_not_a_ct2_whisper_model(
    catalog: ModelCatalog, tmp_path: Path
) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00garbage")
    with pytest.raises(ConversionError):
        catalog.import_ct2(tmp_path, "broken")
    assert not list(tmp_path.glob("*.pt"))


def test_injected_oom_fails_the_load_like_a_real_allocation_failure(
    catalog: ModelCatalog,
) -> None:
    tuning = load_tuning(worker_fault_oom_models="base.en, tiny.en")
    assert tuning.fault_oom_models == frozenset({"base.en", "tiny.en"})
    assert load_tuning().fault_oom_models == frozenset()  # off by default
    loader = EngineLoader(catalog, fault_oom_models=tuning.fault_oom_models)
    with pytest.raises(MemoryError, match="WORKER_FAULT_OOM_MODELS") as caught:
        loader.load(loader.key_for("faster-whisper", "tiny.en"))
    assert is_out_of_memory(caught.value)
    # only the named models: another one still loads
    loader.load(loader.key_for("faster-whisper", "base")).close()


def test_cpu_threads_are_shared_out_between_the_slots() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert default_cpu_threads(1) == cpus
    assert default_cpu_threads(cpus) == 1
    assert default_cpu_threads(cpus * 4) == 1
