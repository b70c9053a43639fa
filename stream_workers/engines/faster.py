"""faster-whisper (CTranslate2): int8 on CPU, batched inference for long audio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from stream_workers.engines.windows import (
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    WindowTranscript,
    split_at_timestamps,
)
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
        # decodes windows of many jobs together (stream_workers/batching.py)
        self._windows = _windows_pipeline(self._model)

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

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        """Decode `windows` (of any jobs) in one batched model call.

        faster-whisper's batched pipeline decodes given clips of one audio array in batches,
        each clip alone: the windows are laid into 30 s slots of one array, one clip each,
        and every segment comes back with its slot's offset (`seek`), which names its window.
        """
        if not windows:
            return []
        slots = np.zeros(len(windows) * WINDOW_SAMPLES, dtype=np.float32)
        clips = []
        for index, window in enumerate(windows):
            start = index * WINDOW_SAMPLES
            samples = window[:WINDOW_SAMPLES]
            slots[start : start + len(samples)] = samples
            clips.append(
                {"start": index * WINDOW_SECONDS, "end": (start + len(samples)) / SAMPLE_RATE}
            )
        kwargs: dict[str, Any] = {
            **faster_whisper_arguments(request.decoding),
            "language": request.language,
            "task": request.task.value,
            "clip_timestamps": clips,
            "batch_size": len(windows),
            "without_timestamps": False,  # segments within a window, as one-at-a-time gives
            "word_timestamps": False,
        }
        try:
            self._windows.decoded = []
            segments, _ = self._windows.transcribe(slots, **kwargs)
            per_window: list[list[OurSegment]] = [[] for _ in windows]
            frames_per_window = WINDOW_SECONDS * self._model.frames_per_second
            for segment in segments:
                index = round(segment.seek / frames_per_window)
                offset = index * WINDOW_SECONDS
                per_window[index].append(
                    OurSegment(
                        id=len(per_window[index]),
                        start=max(0.0, segment.start - offset),
                        end=max(0.0, segment.end - offset),
                        text=segment.text,
                        tokens=tuple(segment.tokens),
                        avg_logprob=segment.avg_logprob,
                        no_speech_prob=segment.no_speech_prob,
                    )
                )
        except ValueError as exc:
            raise InvalidOptionsError(str(exc)) from exc
        # where each window's decoding stopped short, by the rule of one-at-a-time decoding
        timestamp_begin = self._windows.timestamp_begin
        resumes = [
            split_at_timestamps(tokens, timestamp_begin, len(window) / SAMPLE_RATE)[1]
            for tokens, window in zip(self._windows.decoded, windows, strict=True)
        ]
        return [
            WindowTranscript(tuple(found), resume)
            for found, resume in zip(per_window, resumes, strict=True)
        ]

    def close(self) -> None:
        self._batched = None
        del self._windows
        del self._model


def _windows_pipeline(model: Any) -> Any:
    """faster-whisper's batched pipeline, keeping each window's decoded tokens.

    The pipeline turns tokens into segments and drops what tells whether a window's
    decoding stopped short of its end; the tokens say it (`split_at_timestamps`).
    """
    from faster_whisper import BatchedInferencePipeline  # noqa: PLC0415

    class WindowsPipeline(BatchedInferencePipeline):  # type: ignore[misc]
        decoded: list[list[int]]
        timestamp_begin: int

        def generate_segment_batched(self, features: Any, tokenizer: Any, options: Any) -> Any:
            encoder_output, outputs = super().generate_segment_batched(features, tokenizer, options)
            self.timestamp_begin = tokenizer.timestamp_begin
            self.decoded.extend(list(output["tokens"]) for output in outputs)
            return encoder_output, outputs

    pipeline = WindowsPipeline(model)
    pipeline.decoded = []
    pipeline.timestamp_begin = 0
    return pipeline
