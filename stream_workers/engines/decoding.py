"""One decoding policy for both engines: the defaults, and each engine's arguments for it.

A request's options say little (`beam_size`, `temperature`, `vad_filter`, the prompt and
word timestamps); everything else both engines would choose for themselves is written
down here once, with the same value for each, so that the same request decodes the same
way on faster-whisper and on openai-whisper. Why these defaults: stream_workers/README.md
("Decoding defaults"), measured with `python -m bench.bench_decoding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas.events import TranscriptionOptions

DEFAULT_BEAM_SIZE = 5
"""Beam width when a request leaves `beam_size` null, on either engine."""
BEST_OF = 5
"""Candidates sampled at a temperature above 0 (faster-whisper's own default; openai-whisper
would sample one)."""
FALLBACK_STEP = 0.2
"""The engines' own schedule: retry a window at +0.2 up to 1.0 when it fails the checks."""
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6


def fallback_schedule(start: float) -> tuple[float, ...]:
    """`start`, then rising by FALLBACK_STEP to at most 1.0 (the engines' own fallback)."""
    steps = math.floor((1.0 - start) / FALLBACK_STEP + 1e-9)
    return tuple(round(start + FALLBACK_STEP * i, 6) for i in range(max(steps, 0) + 1))


@dataclass(frozen=True, slots=True)
class Decoding:
    """What both engines are told for one job."""

    beam_size: int = DEFAULT_BEAM_SIZE
    temperatures: tuple[float, ...] = (0.0,)
    """One temperature: no fallback. Several: each tried in turn on a window that fails
    the compression-ratio or log-probability check."""
    vad_filter: bool = False
    initial_prompt: str | None = None
    word_timestamps: bool = False

    @classmethod
    def of(cls, options: TranscriptionOptions) -> Decoding:
        """The request's options, with the defaults where they are null.

        `temperature` is used alone: no fallback (the measured choice, see the README)."""
        return cls(
            beam_size=options.beam_size if options.beam_size is not None else DEFAULT_BEAM_SIZE,
            temperatures=(options.temperature,),
            vad_filter=options.vad_filter,
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
        )

    @property
    def temperature_argument(self) -> float | tuple[float, ...]:
        """As both engines take it: a float turns their fallback off, a tuple is the schedule."""
        return self.temperatures[0] if len(self.temperatures) == 1 else self.temperatures


def faster_whisper_arguments(decoding: Decoding) -> dict[str, Any]:
    """Keyword arguments of faster-whisper's `transcribe` (plain and batched)."""
    return {
        "beam_size": decoding.beam_size,
        "best_of": BEST_OF,
        "patience": 1.0,
        "temperature": decoding.temperature_argument,
        "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
        "log_prob_threshold": LOG_PROB_THRESHOLD,
        "no_speech_threshold": NO_SPEECH_THRESHOLD,
        "condition_on_previous_text": True,
        "initial_prompt": decoding.initial_prompt,
        "word_timestamps": decoding.word_timestamps,
        "vad_filter": decoding.vad_filter,
    }


def openai_whisper_arguments(decoding: Decoding) -> dict[str, Any]:
    """Keyword arguments of `whisper.transcribe`. Its VAD is ours (engines/vad.py): it has
    none of its own, so `vad_filter` is applied around the call, not passed in."""
    return {
        "beam_size": decoding.beam_size,
        "best_of": BEST_OF,
        "patience": 1.0,
        "temperature": decoding.temperature_argument,
        "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
        "logprob_threshold": LOG_PROB_THRESHOLD,
        "no_speech_threshold": NO_SPEECH_THRESHOLD,
        "condition_on_previous_text": True,
        "initial_prompt": decoding.initial_prompt,
        "word_timestamps": decoding.word_timestamps,
    }
