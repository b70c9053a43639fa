"""Fakes of the model pool's ports (`stream_workers.pool.ModelLoader` and the
`Transcriber`s it loads), for unit tests of the pool and of the job runner.

`tests/integration/contracts/test_model_loader_contract.py` checks them against the real
`EngineLoader` and engines with the offline models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    Segment,
    SegmentCallback,
    TranscribeRequest,
    TranscriptResult,
)
from stream_workers.engines.windows import WindowTranscript

TINY = ModelKey("faster-whisper", "tiny", "int8")
BASE = ModelKey("faster-whisper", "base", "int8")
SMALL = ModelKey("faster-whisper", "small", "int8")
FAMILY = (TINY, BASE, SMALL)
"""The fake loader's models, smallest first."""


class FakeModel:
    """A `Transcriber` that hears nothing; `fail_running` makes it fail as CUDA OOM does."""

    def __init__(self, key: ModelKey, fail_running: bool = False) -> None:
        self.key = key
        self.closed = False
        self.fail_running = fail_running

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult:
        if self.fail_running:
            raise RuntimeError("CUDA failed to allocate memory")
        duration = len(audio) / SAMPLE_RATE
        on_segment(duration, duration)
        return TranscriptResult((), "en", 1.0, duration)

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        if self.fail_running:
            raise RuntimeError("CUDA failed to allocate memory")
        return [WindowTranscript(()) for _ in windows]

    def close(self) -> None:
        self.closed = True


class FakeLoader:
    """A `ModelLoader` of `FAMILY`; `oom_on_load` / `oom_on_run` make those keys run out
    of memory; `sizes_mb` overrides the memory estimates (100, 200, 400 MB)."""

    def __init__(self, sizes_mb: dict[ModelKey, float] | None = None) -> None:
        self.loaded: list[FakeModel] = []
        self.oom_on_load: set[ModelKey] = set()
        self.oom_on_run: set[ModelKey] = set()
        self.sizes_mb = {TINY: 100.0, BASE: 200.0, SMALL: 400.0, **(sizes_mb or {})}

    def load(self, key: ModelKey) -> FakeModel:
        if key in self.oom_on_load:
            raise MemoryError(f"cannot allocate {key}")
        model = FakeModel(key, fail_running=key in self.oom_on_run)
        self.loaded.append(model)
        return model

    def estimate_mb(self, key: ModelKey) -> float:
        return self.sizes_mb[key]

    def smaller(self, key: ModelKey) -> ModelKey | None:
        index = FAMILY.index(key)
        return FAMILY[index - 1] if index > 0 else None


class ScriptedModel:
    """A `Transcriber` that reports `segments` evenly spaced segments over the audio
    ("word0", "word1", ...), running `during(index)` after each one.

    Batched (`transcribe_windows`): one segment per window, " window of N.Ns", after
    `before_batch(windows)` ran (it may block or raise); a window for which `poisoned`
    is true fails the whole call with ValueError, as a bad input can. `batches` records
    each call's window lengths in seconds."""

    def __init__(
        self,
        key: ModelKey,
        segments: int = 20,
        during: Callable[[int], object] | None = None,
    ) -> None:
        self.key = key
        self.segments = segments
        self.during = during
        self.calls = 0
        self.audio_seconds: list[float] = []
        self.requests: list[TranscribeRequest] = []
        self.batches: list[list[float]] = []
        self.before_batch: Callable[[Sequence[Samples]], object] | None = None
        self.poisoned: Callable[[Samples], bool] = lambda _window: False
        self.stops_short: Callable[[float], float | None] = lambda _seconds: None
        """Where a window of so many seconds stops short of its end (its `resume_at`)."""

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult:
        self.calls += 1
        duration = len(audio) / SAMPLE_RATE
        self.audio_seconds.append(duration)
        self.requests.append(request)
        out = []
        for index in range(self.segments):
            start = duration * index / self.segments
            end = duration * (index + 1) / self.segments
            out.append(Segment(index, start, end, f" word{index}", (1, 2), -0.1, 0.0))
            on_segment(end, duration)
            if self.during is not None:
                self.during(index)
        return TranscriptResult(tuple(out), "en", 1.0, duration)

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        self.requests.append(request)
        if self.before_batch is not None:
            self.before_batch(windows)
        if any(self.poisoned(window) for window in windows):
            raise ValueError("a poisoned window")
        seconds = [len(window) / SAMPLE_RATE for window in windows]
        self.batches.append(seconds)
        out = []
        for length in seconds:
            stop = self.stops_short(length)
            end = length if stop is None else stop
            segment = Segment(0, 0.0, end, f" window of {length:.1f}s", (1,), -0.1, 0.0)
            out.append(WindowTranscript((segment,), stop))
        return out

    def close(self) -> None:
        return None


class ScriptedLoader:
    """A `ModelLoader` that lends its one `ScriptedModel` for any key."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model
        self.loads = 0

    def load(self, key: ModelKey) -> ScriptedModel:
        self.loads += 1
        return self.model

    def estimate_mb(self, key: ModelKey) -> float:
        return 10

    def smaller(self, key: ModelKey) -> ModelKey | None:
        return None
