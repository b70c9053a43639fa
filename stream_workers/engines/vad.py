"""`vad_filter` for openai-whisper, with the Silero VAD that faster-whisper bundles.

openai-whisper has no voice activity detection. faster-whisper's `vad_filter` finds the
speech, transcribes only that (joined), and maps the timestamps back onto the original
audio. Doing the same steps with faster-whisper's own functions, model and default
parameters makes `vad_filter` mean one thing on both engines; faster-whisper is a
dependency of the worker either way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from stream_workers.engines.base import SAMPLE_RATE, Samples, Segment


@dataclasses.dataclass(frozen=True, slots=True)
class SpeechOnly:
    """The speech of some audio, joined, and how to map its times back."""

    samples: Samples
    _timeline: Any
    """faster_whisper.vad.SpeechTimestampsMap, or None when nothing was cut."""

    def restore(self, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
        """Segments of the joined speech, with times on the original audio."""
        return tuple(self._restored(segment) for segment in segments)

    def _restored(self, segment: Segment) -> Segment:
        timeline = self._timeline
        if timeline is None:
            return segment
        if segment.words:
            # As faster-whisper does: both ends of a word map through the same speech chunk.
            words = []
            for word in segment.words:
                chunk = timeline.get_chunk_index((word.start + word.end) / 2)
                words.append(
                    dataclasses.replace(
                        word,
                        start=timeline.get_original_time(word.start, chunk),
                        end=timeline.get_original_time(word.end, chunk),
                    )
                )
            return dataclasses.replace(
                segment, start=words[0].start, end=words[-1].end, words=tuple(words)
            )
        return dataclasses.replace(
            segment,
            start=timeline.get_original_time(segment.start),
            end=timeline.get_original_time(segment.end, is_end=True),
        )


def keep_speech(samples: Samples) -> SpeechOnly:
    """The speech in `samples` (Silero VAD with faster-whisper's default parameters)."""
    from faster_whisper.vad import (  # noqa: PLC0415 - loads onnxruntime; only when asked
        SpeechTimestampsMap,
        VadOptions,
        collect_chunks,
        get_speech_timestamps,
    )

    chunks = get_speech_timestamps(samples, VadOptions())
    pieces, _ = collect_chunks(samples, chunks)
    speech = np.concatenate(pieces, axis=0).astype(np.float32, copy=False)
    timeline = SpeechTimestampsMap(chunks, SAMPLE_RATE) if chunks else None
    return SpeechOnly(speech, timeline)
