"""Validation of a submission's options; every error names its field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from producer_api.problems import validation_error
from schemas.events import Priority, Task

ENGINES = ("faster-whisper", "openai-whisper")
OPTION_FIELDS = frozenset(
    {
        "priority",
        "model",
        "engine",
        "language",
        "task",
        "initial_prompt",
        "word_timestamps",
        "callback_url",
        "beam_size",
        "temperature",
        "vad_filter",
    }
)
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
MAX_PROMPT = 2000
BEAM_SIZES = range(1, 11)
DEFAULT_BEAM_SIZE_TEXT = "5"
"""The workers' default (stream_workers/engines/decoding.py), for the OpenAPI text only."""
E = TypeVar("E", Priority, Task)
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    priority: Priority
    model: str
    engine: str | None
    language: str | None
    task: Task
    initial_prompt: str | None
    word_timestamps: bool
    callback_url: str | None
    beam_size: int | None = None
    """None: the workers' default, the same on both engines."""
    temperature: float = 0.0
    vad_filter: bool = False


OPTIONS_SCHEMA: dict[str, object] = {
    "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal"},
    "model": {"type": "string", "description": "Whisper model size, e.g. tiny.en"},
    "engine": {"type": "string", "enum": list(ENGINES)},
    "language": {"type": "string", "description": "ISO 639-1 code; omit to detect"},
    "task": {"type": "string", "enum": [t.value for t in Task], "default": "transcribe"},
    "initial_prompt": {"type": "string", "maxLength": MAX_PROMPT},
    "word_timestamps": {"type": "boolean", "default": False},
    "callback_url": {
        "type": "string",
        "format": "uri",
        "description": "POSTed a signed JSON callback (Standard Webhooks) when the job "
        "completes, fails or is cancelled; a host that resolves to a private, loopback or "
        "metadata address is refused",
    },
    "beam_size": {
        "type": "integer",
        "minimum": BEAM_SIZES.start,
        "maximum": BEAM_SIZES.stop - 1,
        "description": f"Beam width; omitted: {DEFAULT_BEAM_SIZE_TEXT}, on either engine",
    },
    "temperature": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0,
        "description": "Decoding temperature, used alone (no fallback to higher ones); "
        "above 0 samples 5 candidates instead of the beam search",
    },
    "vad_filter": {
        "type": "boolean",
        "default": False,
        "description": "Transcribe only the speech that Silero VAD finds (both engines)",
    },
}


def parse_options(values: Mapping[str, object], default_model: str) -> SubmitOptions:
    unknown = sorted(set(values) - OPTION_FIELDS)
    if unknown:
        raise validation_error(unknown[0], "unknown field")
    return SubmitOptions(
        priority=_enum(values, "priority", Priority, Priority.NORMAL),
        model=_model(values.get("model"), default_model),
        engine=_choice(values, "engine", ENGINES),
        language=_language(values.get("language")),
        task=_enum(values, "task", Task, Task.TRANSCRIBE),
        initial_prompt=_prompt(values.get("initial_prompt")),
        word_timestamps=_bool("word_timestamps", values.get("word_timestamps")),
        callback_url=_callback(values.get("callback_url")),
        beam_size=_beam_size(values.get("beam_size")),
        temperature=_temperature(values.get("temperature")),
        vad_filter=_bool("vad_filter", values.get("vad_filter")),
    )


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation_error(name, "must be a string")
    return value.strip() or None


def _enum(values: Mapping[str, object], name: str, kind: type[E], default: E) -> E:
    text = _text(name, values.get(name))
    if text is None:
        return default
    try:
        return kind(text.lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise validation_error(name, f"must be one of {allowed}, got {text!r}") from None


def _choice(values: Mapping[str, object], name: str, allowed: tuple[str, ...]) -> str | None:
    text = _text(name, values.get(name))
    if text is not None and text not in allowed:
        raise validation_error(name, f"must be one of {', '.join(allowed)}, got {text!r}")
    return text


def _model(value: object, default: str) -> str:
    text = _text("model", value)
    if text is None:
        return default
    if not _MODEL_RE.match(text):
        raise validation_error("model", f"not a model name: {text!r}")
    return text


def _language(value: object) -> str | None:
    text = _text("language", value)
    if text is not None and not _LANGUAGE_RE.match(text.lower()):
        raise validation_error("language", f"must be a 2- or 3-letter language code, got {text!r}")
    return text.lower() if text is not None else None


def _prompt(value: object) -> str | None:
    text = _text("initial_prompt", value)
    if text is not None and len(text) > MAX_PROMPT:
        raise validation_error("initial_prompt", f"must be at most {MAX_PROMPT} characters")
    return text


def _bool(name: str, value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
    raise validation_error(name, f"must be true or false, got {value!r}")


def _number(name: str, value: object) -> float | None:
    """A JSON number, or a form field's text of one; None when absent or blank."""
    if value is None:
        return None
    if isinstance(value, bool):  # a JSON true is an int to Python, not a number here
        raise validation_error(name, f"must be a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            number = float(value.strip())
        except ValueError:
            raise validation_error(name, f"must be a number, got {value!r}") from None
    else:
        raise validation_error(name, f"must be a number, got {value!r}")
    if not math.isfinite(number):
        raise validation_error(name, f"must be a finite number, got {value!r}")
    return number


def _beam_size(value: object) -> int | None:
    number = _number("beam_size", value)
    if number is None:
        return None
    if not number.is_integer() or int(number) not in BEAM_SIZES:
        raise validation_error(
            "beam_size",
            f"must be a whole number from {BEAM_SIZES.start} to {BEAM_SIZES.stop - 1}, "
            f"got {value!r}",
        )
    return int(number)


def _temperature(value: object) -> float:
    number = _number("temperature", value)
    if number is None:
        return 0.0
    if not 0.0 <= number <= 1.0:
        raise validation_error("temperature", f"must be from 0 to 1, got {value!r}")
    return number


def _callback(value: object) -> str | None:
    text = _text("callback_url", value)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(text) > 2048:
        raise validation_error("callback_url", f"must be an http(s) URL, got {text!r}")
    return text


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise validation_error(
            "Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key
