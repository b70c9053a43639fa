"""The pure parts of issue 14: event cursors, SSE frames and OpenAI's response shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_api.job_events import (
    InvalidCursorError,
    event_name,
    format_cursor,
    parse_cursor,
    sse_frame,
)
from producer_api.openai_format import compression_ratio, error_body, language_name, render
from tests.support.sse import SseEvent, parse_lines


@given(st.dictionaries(st.integers(0, 4095), st.integers(0, 2**62), min_size=1, max_size=64))
def test_a_cursor_reads_back_as_written(cursor: dict[int, int]) -> None:
    assert parse_cursor(format_cursor(cursor)) == cursor


@pytest.mark.parametrize("text", ["", "nonsense", "0:", ":5", "0:1,x", "-1:3", "0:1;1:2"])
def test_a_cursor_this_api_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        parse_cursor(text)


def test_an_sse_frame_parses_as_an_eventsource_would() -> None:
    payload = {"job_id": "j", "status": "processing", "progress": 0.5, "text": "a\nb"}
    frame = sse_frame("progress", payload, "0:5,1:2").decode()
    seen: list[SseEvent] = []
    parse_lines(iter(frame.split("\n")), seen.append)
    assert seen == [SseEvent("0:5,1:2", "progress", payload)]


def test_event_names() -> None:
    assert event_name("processing", 0.0) == "status"
    assert event_name("processing", 0.4) == "progress"
    assert event_name("completed", 1.0) == "status"


DOCUMENT: dict[str, Any] = {
    "text": " Hello there. General Kenobi.",
    "language": "en",
    "duration": 4.2,
    "segments": [
        {
            "id": 0,
            "start": 0.0,
            "end": 1.5,
            "text": " Hello there.",
            "tokens": [1, 2],
            "avg_logprob": -0.2,
            "no_speech_prob": 0.01,
            "words": [{"start": 0.0, "end": 0.5, "word": " Hello", "probability": 0.9}],
        },
        {
            "id": 1,
            "start": 1.5,
            "end": 4.2,
            "text": " General Kenobi.",
            "tokens": [3],
            "avg_logprob": -0.3,
            "no_speech_prob": 0.02,
        },
    ],
    "words": [
        {"start": 0.0, "end": 0.5, "word": " Hello", "probability": 0.9},
        {"start": 0.5, "end": 1.5, "word": " there.", "probability": 0.8},
    ],
}


def test_json_is_the_text_and_the_usage() -> None:
    body, content_type = render(
        DOCUMENT, "json", task="transcribe", temperature=0.0, granularities=frozenset()
    )
    assert content_type == "application/json"
    assert body == {
        "text": "Hello there. General Kenobi.",
        "usage": {"type": "duration", "seconds": 5},
    }


def test_verbose_json_has_every_field_openai_documents() -> None:
    body, _ = render(
        DOCUMENT,
        "verbose_json",
        task="translate",
        temperature=0.2,
        granularities=frozenset({"word"}),
    )
    assert isinstance(body, dict)
    assert body["task"] == "translate"
    assert body["language"] == "english"
    assert body["duration"] == 4.2
    assert "segments" not in body  # only words were asked for
    assert body["words"] == [
        {"word": " Hello", "start": 0.0, "end": 0.5},
        {"word": " there.", "start": 0.5, "end": 1.5},
    ]
    body, _ = render(
        DOCUMENT, "verbose_json", task="transcribe", temperature=0.2, granularities=frozenset()
    )
    assert isinstance(body, dict)
    assert "words" not in body
    second = body["segments"][1]
    assert set(second) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }
    assert second["seek"] == 150
    assert second["temperature"] == 0.2
    assert second["compression_ratio"] == pytest.approx(compression_ratio(" General Kenobi."))


def test_text_formats_reuse_the_renderers() -> None:
    srt, content_type = render(
        DOCUMENT, "srt", task="transcribe", temperature=0.0, granularities=frozenset()
    )
    assert content_type == "text/plain"
    assert isinstance(srt, str)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n")


def test_language_names_and_the_error_body() -> None:
    assert language_name("en") == "english"
    assert language_name("de") == "german"
    assert language_name("xx") == "xx"
    assert json.loads(json.dumps(error_body("no", status=404, param="model", code="x"))) == {
        "error": {"message": "no", "type": "invalid_request_error", "param": "model", "code": "x"}
    }
    assert error_body("down", status=503)["error"]["type"] == "server_error"
