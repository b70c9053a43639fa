from __future__ import annotations

import pytest

from producer_api.options import parse_idempotency_key, parse_options
from producer_api.problems import ProblemError
from schemas.events import Priority, Task


def test_defaults() -> None:
    options = parse_options({}, "tiny.en")
    assert options.priority is Priority.NORMAL
    assert options.task is Task.TRANSCRIBE
    assert options.model == "tiny.en"
    assert (options.engine, options.language, options.callback_url) == (None, None, None)
    assert options.word_timestamps is False


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
