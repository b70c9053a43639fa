"""OpenAI's audio API shapes: responses rendered from our result document, and errors.

The result document (stream_workers/results.py) has each segment's id, times, text,
tokens, avg_logprob and no_speech_prob. OpenAI's verbose_json also has ``seek`` (the
segment's start in 10 ms mel frames), ``temperature`` (the request's: decoding never
falls back to another) and ``compression_ratio`` (the gzip ratio of the text, as Whisper
computes it); those three are derived here.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import math
import zlib
from pathlib import Path
from typing import Any

from producer_api.render import ResultDocumentError, render_srt, render_text, render_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")

_ERROR_TYPES = {
    401: "invalid_request_error",
    403: "invalid_request_error",
    429: "requests",
}


def error_body(
    message: str, *, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@functools.cache
def _language_names() -> dict[str, str]:
    """Whisper's language names ("en" -> "english"), read from openai-whisper's
    tokenizer source without importing the package (that would load torch)."""
    spec = importlib.util.find_spec("whisper")
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders:
        return {}
    source = Path(next(iter(folders))) / "tokenizer.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "LANGUAGES" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            names = ast.literal_eval(node.value)
            if isinstance(names, dict):
                return {str(k): str(v) for k, v in names.items()}
    return {}


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"), not its code."""
    return _language_names().get(code, code)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _number(value: object, default: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _segments(document: dict[str, Any], temperature: float) -> list[dict[str, Any]]:
    items = document.get("segments")
    if not isinstance(items, list):
        raise ResultDocumentError("the result document has no 'segments' list")
    segments = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ResultDocumentError(f"segment {index} lacks its text")
        start = _number(item.get("start"))
        tokens = item.get("tokens")
        segments.append(
            {
                "id": int(_number(item.get("id"), index)),
                "seek": round(start * 100),
                "start": start,
                "end": _number(item.get("end")),
                "text": item["text"],
                "tokens": [int(t) for t in tokens] if isinstance(tokens, list) else [],
                "temperature": temperature,
                "avg_logprob": _number(item.get("avg_logprob")),
                "compression_ratio": compression_ratio(item["text"]),
                "no_speech_prob": _number(item.get("no_speech_prob")),
            }
        )
    return segments


def _words(document: dict[str, Any]) -> list[dict[str, Any]]:
    items = document.get("words")
    if not isinstance(items, list):
        items = [
            word
            for segment in document.get("segments") or []
            if isinstance(segment, dict)
            for word in segment.get("words") or []
        ]
    return [
        {
            "word": str(w.get("word", "")),
            "start": _number(w.get("start")),
            "end": _number(w.get("end")),
        }
        for w in items
        if isinstance(w, dict)
    ]


def _text(document: dict[str, Any]) -> str:
    return render_text(document).strip()


def _usage(document: dict[str, Any]) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(_number(document.get("duration")))}


def render(
    document: dict[str, Any],
    response_format: str,
    *,
    task: str,
    temperature: float,
    granularities: frozenset[str],
) -> tuple[str | dict[str, Any], str]:
    """The response body (a JSON object or text) and its content type."""
    if response_format == "json":
        return {"text": _text(document), "usage": _usage(document)}, "application/json"
    if response_format == "verbose_json":
        body: dict[str, Any] = {
            "task": task,
            "language": language_name(str(document.get("language") or "")),
            "duration": _number(document.get("duration")),
            "text": _text(document),
        }
        if not granularities or "segment" in granularities:
            body["segments"] = _segments(document, temperature)
        if "word" in granularities:
            body["words"] = _words(document)
        body["usage"] = _usage(document)
        return body, "application/json"
    renderers = {"text": render_text, "srt": render_srt, "vtt": render_vtt}
    return renderers[response_format](document), "text/plain"
