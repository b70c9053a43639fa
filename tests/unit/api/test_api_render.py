from __future__ import annotations

from typing import Any

import pytest

from producer_api.render import (
    RENDERERS,
    ResultDocumentError,
    render_srt,
    render_text,
    render_tsv,
    render_vtt,
)

DOC: dict[str, Any] = {
    "language": "en",
    "segments": [
        {"start": 0, "end": 1.2345, "text": " Hello\tthere ", "words": []},
        {"start": 59.9996, "end": 3600.5, "text": "General Kenobi."},
    ],
}


def test_text_joins_segments_unless_the_document_has_text() -> None:
    assert render_text(DOC) == "Hello\tthere General Kenobi.\n"
    assert render_text({**DOC, "text": " Whole text. "}) == "Whole text.\n"


def test_srt_and_vtt_timestamps_round_to_milliseconds() -> None:
    assert render_srt(DOC) == (
        "1\n00:00:00,000 --> 00:00:01,234\nHello\tthere\n\n"
        "2\n00:01:00,000 --> 01:00:00,500\nGeneral Kenobi.\n"
    )
    assert render_vtt(DOC).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.234\n")


def test_tsv_uses_integer_milliseconds_and_no_tabs_in_text() -> None:
    assert render_tsv(DOC).splitlines() == [
        "start\tend\ttext",
        "0\t1234\tHello there",
        "60000\t3600500\tGeneral Kenobi.",
    ]


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"segments": "no"},
        {"segments": [{"start": 0, "text": "x"}]},
        {"segments": [{"start": "0", "end": 1, "text": "x"}]},
        {"segments": [{"start": True, "end": 1, "text": "x"}]},
        {"segments": [None]},
    ],
)
def test_malformed_documents_are_rejected(document: dict[str, Any]) -> None:
    for name, render in RENDERERS.items():
        if name == "text" and isinstance(document.get("text"), str):
            continue
        with pytest.raises(ResultDocumentError):
            render(document)
