"""Validation of a submission's options; every error names its field."""

from __future__ import annotations

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
    }
)
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
MAX_PROMPT = 2000
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


OPTIONS_SCHEMA: dict[str, object] = {
    "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal"},
    "model": {"type": "string", "description": "Whisper model size, e.g. tiny.en"},
    "engine": {"type": "string", "enum": list(ENGINES)},
    "language": {"type": "string", "description": "ISO 639-1 code; omit to detect"},
    "task": {"type": "string", "enum": [t.value for t in Task], "default": "transcribe"},
    "initial_prompt": {"type": "string", "maxLength": MAX_PROMPT},
    "word_timestamps": {"type": "boolean", "default": False},
    "callback_url": {"type": "string", "format": "uri", "description": "stored for now"},
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
        word_timestamps=_bool(values.get("word_timestamps")),
        callback_url=_callback(values.get("callback_url")),
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


def _bool(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
    raise validation_error("word_timestamps", f"must be true or false, got {value!r}")


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
