from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
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


TRICKY: dict[str, Any] = {
    "segments": [
        {"start": 0, "end": 1, "text": "a --> b"},
        {"start": 1, "end": 2, "text": "-->"},
        {"start": 2, "end": 3, "text": "x ---> y <b>not bold</b> & more"},
        {"start": 3, "end": 4, "text": "one\n\ntwo"},
        {"start": 4, "end": 5, "text": "last"},
    ]
}
TIMING = re.compile(r"^\d{2}:\d{2}:\d{2}[,.]\d{3} --> \d{2}:\d{2}:\d{2}[,.]\d{3}$")


def _cue_blocks(rendered: str) -> list[list[str]]:
    # What SRT and WebVTT readers do: a blank line ends a cue, and a line with "-->" in
    # it is a cue's timing line (WebVTT: "if line contains '-->', then break").
    blocks = [block.splitlines() for block in rendered.split("\n\n") if block.strip()]
    return [block for block in blocks if block != ["WEBVTT"]]


@pytest.mark.parametrize("render", [render_srt, render_vtt], ids=["srt", "vtt"])
def test_cue_text_never_makes_a_second_arrow_line(render: Any) -> None:
    blocks = _cue_blocks(render(TRICKY))
    assert len(blocks) == len(TRICKY["segments"])
    for block in blocks:
        arrows = [line for line in block if "-->" in line]
        assert len(arrows) == 1, block
        assert TIMING.match(arrows[0]), block


def test_srt_cue_text_shows_arrows_as_short_arrows() -> None:
    blocks = _cue_blocks(render_srt(TRICKY))
    assert [block[2:] for block in blocks] == [
        ["a -> b"],
        ["->"],
        ["x -> y <b>not bold</b> & more"],
        ["one", "two"],
        ["last"],
    ]


def test_vtt_cue_text_reads_back_unchanged_through_ffmpeg(tmp_path: Path) -> None:
    source = tmp_path / "tricky.vtt"
    source.write_text(render_vtt(TRICKY), encoding="utf-8")
    # ffmpeg's WebVTT reader decodes the character references; its SRT writer does not
    # escape, so the text comes back as the transcript had it.
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None, "ffmpeg is not installed (make setup installs it)"
    result = subprocess.run(
        [ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-i", str(source), "-f", "srt", "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    texts = [block[2:] for block in _cue_blocks(result.stdout)]
    assert texts == [
        ["a --> b"],
        ["-->"],
        ["x ---> y <b>not bold</b> & more"],
        ["one", "two"],
        ["last"],
    ]
