"""faster-whisper (CTranslate2): int8 on CPU, batched inference for long audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    SegmentCallback,
    TranscribeRequest,
    TranscriptResult,
    Word,
)
from stream_workers.engines.base import Segment as OurSegment
from stream_workers.engines.decoding import faster_whisper_arguments
from stream_workers.errors import InvalidOptionsError

# Batching only pays off once there is more than one 30 s window to batch.
BATCH_MIN_SECONDS = 60.0


def default_compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "int8"


class FasterWhisperTranscriber:
    def __init__(
        self,
        key: ModelKey,
        model_path: Path,
        *,
        device: str = "cpu",
        cpu_threads: int = 0,
        batch_size: int = 8,
    ) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel  # noqa: PLC0415

        self.key = key
        self._model = WhisperModel(
            str(model_path), device=device, compute_type=key.compute_type, cpu_threads=cpu_threads
        )
        self._batch_size = batch_size
        self._batched = BatchedInferencePipeline(self._model) if batch_size > 1 else None

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult:
        decoding = request.decoding
        kwargs: dict[str, Any] = {
            "language": request.language,
            "task": request.task.value,
            **faster_whisper_arguments(decoding),
        }
        duration = len(audio) / SAMPLE_RATE
        try:
            if self._batched is not None and duration >= BATCH_MIN_SECONDS:
                kwargs["vad_filter"] = True  # the batched pipeline cuts the audio at VAD pauses
                segments, info = self._batched.transcribe(
                    audio, batch_size=self._batch_size, **kwargs
                )
            else:
                segments, info = self._model.transcribe(audio, **kwargs)
        except ValueError as exc:
            raise InvalidOptionsError(str(exc)) from exc
        collected: list[OurSegment] = []
        # faster-whisper decodes lazily: each iteration is real work, so a raise stops it.
        for index, segment in enumerate(segments):
            words = None
            if decoding.word_timestamps:
                words = tuple(
                    Word(w.start, w.end, w.word, w.probability) for w in segment.words or ()
                )
            collected.append(
                OurSegment(
                    id=index,
                    start=segment.start,
                    end=segment.end,
                    text=segment.text,
                    tokens=tuple(segment.tokens),
                    avg_logprob=segment.avg_logprob,
                    no_speech_prob=segment.no_speech_prob,
                    words=words,
                )
            )
            on_segment(min(segment.end, duration), duration)
        return TranscriptResult(
            segments=tuple(collected),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
        )

    def close(self) -> None:
        self._batched = None
        del self._model
