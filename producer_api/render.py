"""Render a result document ({segments: [{start, end, text, words?}], language, ...})."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS: dict[str, str] = {
    "json": "application/json",
    "text": "text/plain",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "tsv": "text/tab-separated-values",
}


class ResultDocumentError(ValueError):
    """The stored result document does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


def segments_of(document: object) -> list[Segment]:
    if not isinstance(document, dict) or not isinstance(document.get("segments"), list):
        raise ResultDocumentError("the result document has no 'segments' list")
    segments = []
    for index, item in enumerate(document["segments"]):
        try:
            start, end, text = item["start"], item["end"], item["text"]
        except (TypeError, KeyError) as exc:
            raise ResultDocumentError(f"segment {index} lacks start, end or text") from exc
        if not isinstance(text, str) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)
        ):
            raise ResultDocumentError(f"segment {index} has values of the wrong type")
        segments.append(Segment(float(start), float(end), text.strip()))
    return segments


def _clock(seconds: float, separator: str) -> str:
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def render_text(document: dict[str, Any]) -> str:
    text = document.get("text")
    if isinstance(text, str):
        return text.strip() + "\n"
    return " ".join(s.text for s in segments_of(document) if s.text) + "\n"


_ARROW = re.compile(r"-{2,}>")


def _cue_lines(text: str) -> str:
    """``text`` without blank lines: in SRT and WebVTT a blank line ends the cue."""
    return "\n".join(line for line in text.splitlines() if line.strip())


def _srt_text(text: str) -> str:
    # A line with "-->" reads as a timing line, and SRT has no escapes: show "->".
    return _ARROW.sub("->", _cue_lines(text))


def _vtt_text(text: str) -> str:
    # WebVTT's character references: "&" and "<" would start markup, and escaping ">"
    # turns "-->" (which would end the cue's text) into "--&gt;".
    escaped = _cue_lines(text).replace("&", "&amp;").replace("<", "&lt;")
    return escaped.replace(">", "&gt;")


def render_srt(document: dict[str, Any]) -> str:
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_srt_text(s.text)}\n"
        for i, s in enumerate(segments_of(document), start=1)
    ]
    return "\n".join(cues)


def render_vtt(document: dict[str, Any]) -> str:
    cues = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_vtt_text(s.text)}\n"
        for s in segments_of(document)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def render_tsv(document: dict[str, Any]) -> str:
    lines = ["start\tend\ttext"]
    for s in segments_of(document):
        text = s.text.replace("\t", " ").replace("\n", " ")
        lines.append(f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{text}")
    return "\n".join(lines) + "\n"


def render_json(document: dict[str, Any]) -> str:
    segments_of(document)
    return json.dumps(document, ensure_ascii=False)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "json": render_json,
    "text": render_text,
    "srt": render_srt,
    "vtt": render_vtt,
    "tsv": render_tsv,
}
