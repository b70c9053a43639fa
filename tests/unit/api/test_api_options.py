from __future__ import annotations

import pytest

from producer_api.options import (
    DEFAULT_BEAM_SIZE_TEXT,
    OPTIONS_SCHEMA,
    parse_idempotency_key,
    parse_options,
)
from producer_api.problems import ProblemError
from schemas.events import Priority, Task
from stream_workers.engines.decoding import DEFAULT_BEAM_SIZE


def test_defaults() -> None:
    options = parse_options({}, "tiny.en")
    assert options.priority is Priority.NORMAL
    assert options.task is Task.TRANSCRIBE
    assert options.model == "tiny.en"
    assert (options.engine, options.language, options.callback_url) == (None, None, None)
    assert options.word_timestamps is False
    # decoding: null beam (the workers' one default), a single temperature 0, no VAD
    assert (options.beam_size, options.temperature, options.vad_filter) == (None, 0.0, False)


def test_values_from_a_form_and_from_json() -> None:
    form = parse_options(
        {
            "priority": "HIGH",
            "language": "EN",
            "word_timestamps": "yes",
            "engine": "openai-whisper",
        },
        "tiny.en",
    )
    assert form.priority is Priority.HIGH
    assert form.language == "en"
    assert form.word_timestamps is True
    assert form.engine == "openai-whisper"
    assert (
        parse_options({"word_timestamps": False, "task": "translate"}, "x").task is Task.TRANSLATE
    )


def test_decoding_options_from_a_form_and_from_json() -> None:
    form = parse_options({"beam_size": "3", "temperature": "0.4", "vad_filter": "on"}, "x")
    assert (form.beam_size, form.temperature, form.vad_filter) == (3, 0.4, True)
    body = parse_options({"beam_size": 10, "temperature": 1, "vad_filter": True}, "x")
    assert (body.beam_size, body.temperature, body.vad_filter) == (10, 1.0, True)
    edges = parse_options({"beam_size": 1.0, "temperature": 0, "vad_filter": "false"}, "x")
    assert (edges.beam_size, edges.temperature, edges.vad_filter) == (1, 0.0, False)
    blank = parse_options({"beam_size": " ", "temperature": "", "vad_filter": ""}, "x")
    assert (blank.beam_size, blank.temperature, blank.vad_filter) == (None, 0.0, False)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"priority": 3}, "priority"),
        ({"task": "summarise"}, "task"),
        ({"engine": "vosk"}, "engine"),
        ({"model": "a b"}, "model"),
        ({"language": "english"}, "language"),
        ({"initial_prompt": "x" * 2001}, "initial_prompt"),
        ({"word_timestamps": "perhaps"}, "word_timestamps"),
        ({"word_timestamps": 1}, "word_timestamps"),
        ({"callback_url": "javascript:alert(1)"}, "callback_url"),
        ({"colour": "red"}, "colour"),
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 11}, "beam_size"),
        ({"beam_size": "11"}, "beam_size"),
        ({"beam_size": 2.5}, "beam_size"),
        ({"beam_size": "five"}, "beam_size"),
        ({"beam_size": True}, "beam_size"),
        ({"beam_size": [5]}, "beam_size"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 1.01}, "temperature"),
        ({"temperature": "2"}, "temperature"),
        ({"temperature": "nan"}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"vad_filter": "maybe"}, "vad_filter"),
        ({"vad_filter": 1}, "vad_filter"),
    ],
)
def test_errors_name_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_options(values, "tiny.en")
    assert caught.value.status == 422
    assert caught.value.errors[0].field == field


def test_idempotency_key() -> None:
    assert parse_idempotency_key(None) is None
    assert parse_idempotency_key(" k-1 ") == "k-1"
    for bad in ("", "   ", "x" * 256, "a\nb"):
        with pytest.raises(ProblemError):
            parse_idempotency_key(bad)


def test_the_openapi_text_names_the_workers_default_beam() -> None:
    assert str(DEFAULT_BEAM_SIZE) == DEFAULT_BEAM_SIZE_TEXT
    assert f"omitted: {DEFAULT_BEAM_SIZE}," in str(OPTIONS_SCHEMA["beam_size"])
