"""30-second windows: how a job's audio is cut for batched decoding, and put back together.

Batched decoding (stream_workers/batching.py) decodes windows of many jobs in one model
call, so each window must be known before decoding starts; one-at-a-time decoding
instead moves its next window to where the last complete segment ended. Audio of at
most 30 s is one window, cut nowhere. Longer audio (or any audio with `vad_filter`) is
cut where Silero VAD (faster-whisper's, as the engines use it) finds pauses: speech
regions are joined into windows of at most 30 s of the original audio, silence between
them inside a window kept, silence between windows dropped. That is the cut
faster-whisper's own batched pipeline makes for long audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from stream_workers.engines.base import SAMPLE_RATE, Samples, Segment, TranscriptResult
from stream_workers.engines.decoding import LOG_PROB_THRESHOLD, NO_SPEECH_THRESHOLD

WINDOW_SECONDS = 30.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
MIN_FOLLOW_UP_S = 0.1
"""A window's rest shorter than this is not decoded again (nothing to hear in it)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a job's audio: `samples` is a view, not a copy."""

    offset: float
    """Where the window starts in the job's audio, in seconds."""
    samples: Samples

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


TIME_PRECISION = 0.02
"""Seconds per Whisper timestamp token."""


@dataclass(frozen=True, slots=True)
class WindowTranscript:
    """What a batched model call gives back for one window: times from the window's start."""

    segments: tuple[Segment, ...]
    resume_at: float | None = None
    """Where the decoder stopped short of the window's end with a segment left unfinished
    (it was dropped): one-at-a-time decoding moves its next window here, and so does
    batching (a follow-up window from here to the window's end). None: all consumed."""


@dataclass(frozen=True, slots=True)
class TokenSpan:
    start: float
    end: float
    tokens: tuple[int, ...]
    """Text tokens and the span's timestamp tokens."""


def split_at_timestamps(
    tokens: Sequence[int], timestamp_begin: int, seconds: float
) -> tuple[list[TokenSpan], float | None]:
    """A window's decoded tokens as segments, and where to resume (None: nowhere).

    The rule both engines apply one window at a time: a segment is closed by two
    timestamps in a row; text after the last such pair is an unfinished segment, dropped
    and decoded again from its start, unless the tokens end with a single timestamp
    (nothing more was said). Without any pair, the whole window is one segment.
    """

    def time_of(token: int) -> float:
        return (token - timestamp_begin) * TIME_PRECISION

    single_ending = len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]
    pairs = [
        i
        for i in range(1, len(tokens))
        if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin
    ]
    if not pairs:
        stamps = [t for t in tokens if t >= timestamp_begin]
        end = time_of(stamps[-1]) if stamps and stamps[-1] != timestamp_begin else seconds
        return [TokenSpan(0.0, min(end, seconds), tuple(tokens))], None
    cuts = [*pairs, len(tokens)] if single_ending else pairs
    spans = []
    last = 0
    for cut in cuts:
        piece = tokens[last:cut]
        spans.append(TokenSpan(time_of(piece[0]), time_of(piece[-1]), tuple(piece)))
        last = cut
    if single_ending:
        return spans, None
    return spans, time_of(tokens[last - 1])


def cut_windows(samples: Samples, *, vad_filter: bool) -> list[Window]:
    """The job's windows, in order (none when VAD finds no speech)."""
    if not vad_filter and len(samples) <= WINDOW_SAMPLES:
        return [Window(0.0, samples)] if len(samples) else []
    spans = _speech_spans(samples)
    return [Window(start / SAMPLE_RATE, samples[start:end]) for start, end in spans]


def _speech_spans(samples: Samples) -> list[tuple[int, int]]:
    """Speech regions (sample ranges) joined greedily into spans of at most 30 s."""
    from faster_whisper.vad import (  # noqa: PLC0415 - loads onnxruntime; only when needed
        VadOptions,
        get_speech_timestamps,
    )

    # The parameters faster-whisper's batched pipeline uses: no region is longer than 30 s.
    options = VadOptions(max_speech_duration_s=WINDOW_SECONDS, min_silence_duration_ms=160)
    spans: list[tuple[int, int]] = []
    for region in get_speech_timestamps(samples, options):
        start, end = int(region["start"]), min(int(region["end"]), len(samples))
        if spans and end - spans[-1][0] <= WINDOW_SAMPLES:
            spans[-1] = (spans[-1][0], end)
            continue
        while end - start > WINDOW_SAMPLES:  # VAD's padding can stretch a region past 30 s
            spans.append((start, start + WINDOW_SAMPLES))
            start += WINDOW_SAMPLES
        spans.append((start, end))
    return spans


def is_silence(transcript: WindowTranscript) -> bool:
    """The engines' own no-speech rule for a window: likely silence and a weak decode."""
    segments = transcript.segments
    if not segments:
        return True
    first = segments[0]
    return first.no_speech_prob > NO_SPEECH_THRESHOLD and first.avg_logprob < LOG_PROB_THRESHOLD


def follow_up(window: Window, transcript: WindowTranscript) -> Window | None:
    """The rest of `window` after where its decoding stopped short, if any is left."""
    resume = transcript.resume_at
    if resume is None or resume <= 0 or window.seconds - resume < MIN_FOLLOW_UP_S:
        return None
    start = round(resume * SAMPLE_RATE)
    return Window(window.offset + resume, window.samples[start:])


def assemble(
    windows: Sequence[Window],
    transcripts: Sequence[WindowTranscript],
    *,
    language: str,
    duration: float,
) -> TranscriptResult:
    """One job's transcript from its windows' transcripts, on the job's own timeline."""
    segments: list[Segment] = []
    pairs = sorted(zip(windows, transcripts, strict=True), key=lambda pair: pair[0].offset)
    for window, transcript in pairs:
        if is_silence(transcript):
            continue
        for segment in transcript.segments:
            segments.append(
                dataclasses.replace(
                    segment,
                    id=len(segments),
                    start=round(window.offset + segment.start, 3),
                    end=round(window.offset + min(segment.end, window.seconds), 3),
                )
            )
    return TranscriptResult(tuple(segments), language, 1.0, duration)
