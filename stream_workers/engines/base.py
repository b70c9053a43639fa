"""The engine port: what a job needs from any Whisper implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

from schemas.events import Task
from stream_workers.engines.decoding import Decoding

if TYPE_CHECKING:
    from stream_workers.engines.windows import WindowTranscript

SAMPLE_RATE = 16_000
Samples = npt.NDArray[np.float32]
"""Decoded audio as both engines take it: 16 kHz mono float32 in [-1, 1]."""

EngineName = Literal["faster-whisper", "openai-whisper"]
ENGINES: tuple[EngineName, ...] = ("faster-whisper", "openai-whisper")


@dataclass(frozen=True, slots=True)
class ModelKey:
    """What the pool keys models by."""

    engine: EngineName
    model: str
    compute_type: str

    def __str__(self) -> str:
        return f"{self.engine}/{self.model}/{self.compute_type}"


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True, slots=True)
class TranscribeRequest:
    language: str | None = None
    task: Task = Task.TRANSCRIBE
    decoding: Decoding = field(default_factory=Decoding)
    """The request's options with the defaults filled in: `Decoding.of(options)`."""


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    duration: float

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def words(self) -> tuple[Word, ...] | None:
        if any(segment.words is None for segment in self.segments):
            return None
        return tuple(word for segment in self.segments for word in segment.words or ())


SegmentCallback = Callable[[float, float], None]
"""Called after each segment (or decoding window) with (seconds done, audio duration).

Raising from it stops the transcription there: that is how cancels and soft time limits
reach a running job.
"""


class Transcriber(Protocol):
    """One loaded model. Not shared between threads: the pool lends it to one job at a time."""

    key: ModelKey

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult: ...

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        """Decode many 30 s windows, of any jobs, in one batched model call
        (stream_workers/batching.py).

        Each window is decoded alone: without the previous window's text, in
        `request.language` (set: no detection), at `request.decoding.temperatures[0]`, with
        no word timestamps. Segment times are from each window's start.
        """
        ...

    def close(self) -> None: ...
