"""Backfill manifests: CSV (with a header row) or JSON Lines, one audio file per row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from whisperstream.errors import WhisperstreamError


class ManifestError(WhisperstreamError):
    """A manifest row is not valid; the message names the line and the field."""


class ManifestRow(BaseModel):
    """One job. `audio` is an `s3://bucket/key` URI or a local path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audio: str = Field(min_length=1)
    priority: Literal["high", "normal"] | None = None
    model: str | None = None
    engine: Literal["faster-whisper", "openai-whisper"] | None = None
    language: str | None = None
    task: Literal["transcribe", "translate"] | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    job_id: str | None = None
    initial_prompt: str | None = None
    word_timestamps: bool | None = None
    beam_size: int | None = Field(default=None, ge=1, le=10)
    """None: the workers' default (the same on both engines)."""
    temperature: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    vad_filter: bool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_s3(self) -> bool:
        return self.audio.startswith("s3://")


def read_manifest(path: Path) -> list[tuple[int, ManifestRow]]:
    """Every row with its line number; the first invalid row stops the read."""
    return list(_rows(path))


def _rows(path: Path) -> Iterator[tuple[int, ManifestRow]]:
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    raw_rows = _jsonl(path) if is_jsonl else _csv(path)
    for line, raw in raw_rows:
        try:
            yield line, ManifestRow.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ManifestError(f"{path}:{line}: {problems}") from exc


def _jsonl(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{number}: not JSON: {exc.msg}") from exc


def _csv(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k}
