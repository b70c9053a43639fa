"""One decoding policy: the defaults, and the same settings given to both engines."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from schemas.events import TranscriptionOptions
from stream_workers.engines.decoding import (
    BEST_OF,
    DEFAULT_BEAM_SIZE,
    Decoding,
    fallback_schedule,
    faster_whisper_arguments,
    openai_whisper_arguments,
)

# openai-whisper spells one argument differently; faster-whisper applies VAD itself.
_OPENAI_NAMES = {"log_prob_threshold": "logprob_threshold"}
_FASTER_ONLY = {"vad_filter"}


def test_null_options_take_the_one_default_and_no_fallback() -> None:
    decoding = Decoding.of(TranscriptionOptions())
    assert decoding.beam_size == DEFAULT_BEAM_SIZE
    assert decoding.temperatures == (0.0,)
    assert decoding.vad_filter is False
    assert decoding == Decoding()


def test_given_options_are_used_as_they_are() -> None:
    options = TranscriptionOptions(
        initial_prompt="Kennedy",
        word_timestamps=True,
        temperature=0.4,
        beam_size=2,
        vad_filter=True,
    )
    assert Decoding.of(options) == Decoding(
        beam_size=2,
        temperatures=(0.4,),
        vad_filter=True,
        initial_prompt="Kennedy",
        word_timestamps=True,
    )


def test_fallback_schedule_is_the_engines_own() -> None:
    assert fallback_schedule(0.0) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert fallback_schedule(0.5) == (0.5, 0.7, 0.9)
    assert fallback_schedule(1.0) == (1.0,)


DECODINGS = [
    Decoding(),
    Decoding(beam_size=1),
    Decoding(beam_size=10, temperatures=(0.7,), initial_prompt="x", word_timestamps=True),
    Decoding(beam_size=3, temperatures=fallback_schedule(0.0), vad_filter=True),
]


@pytest.mark.parametrize("decoding", DECODINGS)
def test_both_engines_get_the_same_settings(decoding: Decoding) -> None:
    faster = faster_whisper_arguments(decoding)
    openai = openai_whisper_arguments(decoding)
    as_openai = {_OPENAI_NAMES.get(k, k): v for k, v in faster.items() if k not in _FASTER_ONLY}
    assert as_openai == openai
    assert faster["vad_filter"] is decoding.vad_filter
    assert openai["beam_size"] == decoding.beam_size
    assert openai["best_of"] == BEST_OF


def test_one_temperature_turns_the_fallback_off_and_several_are_the_schedule() -> None:
    # both libraries retry only when given a sequence of temperatures
    assert faster_whisper_arguments(Decoding())["temperature"] == 0.0
    assert openai_whisper_arguments(Decoding())["temperature"] == 0.0
    schedule = Decoding(temperatures=fallback_schedule(0.0))
    assert openai_whisper_arguments(schedule)["temperature"] == fallback_schedule(0.0)


def _parameters(function: Any) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_every_argument_is_one_the_libraries_take() -> None:
    import whisper  # noqa: PLC0415 - heavy: only this test needs the libraries
    from faster_whisper import BatchedInferencePipeline, WhisperModel  # noqa: PLC0415

    faster = set(faster_whisper_arguments(Decoding()))
    assert faster <= _parameters(WhisperModel.transcribe)
    assert faster <= _parameters(BatchedInferencePipeline.transcribe)
    openai = set(openai_whisper_arguments(Decoding()))
    decode_options = set(whisper.DecodingOptions.__dataclass_fields__)
    assert openai <= _parameters(whisper.transcribe) | decode_options
