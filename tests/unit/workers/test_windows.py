"""Windows for batched decoding (stream_workers/engines/windows.py): where audio is cut,
how decoded tokens become segments, and where a window that stopped short resumes."""

from __future__ import annotations

import numpy as np

from stream_workers.engines.base import SAMPLE_RATE, Segment
from stream_workers.engines.windows import (
    Window,
    WindowTranscript,
    assemble,
    cut_windows,
    follow_up,
    split_at_timestamps,
)

TB = 50_000  # the first timestamp token, <|0.00|>; each next one is 0.02 s later


def ts(seconds: float) -> int:
    return TB + round(seconds / 0.02)


def test_short_audio_is_one_window_cut_nowhere() -> None:
    samples = np.ones(29 * SAMPLE_RATE, dtype=np.float32)
    [window] = cut_windows(samples, vad_filter=False)
    assert window.offset == 0.0
    assert np.shares_memory(window.samples, samples)  # a view, not a copy
    assert len(window.samples) == len(samples)
    assert cut_windows(np.zeros(0, dtype=np.float32), vad_filter=False) == []


def test_silence_longer_than_a_window_has_no_windows_to_decode() -> None:
    assert cut_windows(np.zeros(45 * SAMPLE_RATE, dtype=np.float32), vad_filter=False) == []


def test_segments_close_on_timestamp_pairs_and_a_single_ending_consumes_the_window() -> None:
    tokens = [ts(0), 1, 2, ts(2.4), ts(2.4), 3, ts(5.0)]
    spans, resume = split_at_timestamps(tokens, TB, 30.0)
    assert [(s.start, s.end) for s in spans] == [(0.0, 2.4), (2.4, 5.0)]
    assert spans[0].tokens == (ts(0), 1, 2, ts(2.4))
    assert resume is None


def test_an_unfinished_last_segment_is_dropped_and_decoding_resumes_at_its_start() -> None:
    tokens = [ts(0), 1, 2, ts(2.4), ts(2.4), 3, 4]
    spans, resume = split_at_timestamps(tokens, TB, 30.0)
    assert [(s.start, s.end) for s in spans] == [(0.0, 2.4)]
    assert resume == 2.4
    ending_in_a_pair = [ts(0), 1, ts(3.0), ts(3.0)]
    assert split_at_timestamps(ending_in_a_pair, TB, 30.0)[1] == 3.0


def test_tokens_without_a_pair_are_one_segment_of_the_whole_window() -> None:
    spans, resume = split_at_timestamps([ts(0), 1, 2], TB, 12.5)
    assert [(s.start, s.end) for s in spans] == [(0.0, 12.5)]
    assert resume is None
    assert split_at_timestamps([1, 2, ts(7.0)], TB, 12.5)[0][0].end == 7.0


def test_a_follow_up_window_is_the_rest_after_where_decoding_stopped() -> None:
    window = Window(30.0, np.arange(10 * SAMPLE_RATE, dtype=np.float32))
    rest = follow_up(window, WindowTranscript((), resume_at=6.0))
    assert rest is not None
    assert rest.offset == 36.0
    assert rest.samples[0] == 6 * SAMPLE_RATE
    assert rest.seconds == 4.0
    assert follow_up(window, WindowTranscript((), resume_at=None)) is None
    assert follow_up(window, WindowTranscript((), resume_at=9.95)) is None  # nothing left


def test_assembly_puts_windows_on_the_job_timeline_in_order_and_drops_silence() -> None:
    def said(text: str, start: float, end: float, no_speech: float = 0.0) -> Segment:
        return Segment(0, start, end, text, (1,), -0.2 if no_speech < 0.6 else -1.5, no_speech)

    windows = [
        Window(0.0, np.zeros(10 * SAMPLE_RATE, dtype=np.float32)),
        Window(20.0, np.zeros(5 * SAMPLE_RATE, dtype=np.float32)),
        Window(6.0, np.zeros(4 * SAMPLE_RATE, dtype=np.float32)),  # a follow-up
    ]
    transcripts = [
        WindowTranscript((said(" one", 0.0, 6.0),), resume_at=6.0),
        WindowTranscript((said(" static", 0.0, 5.0, no_speech=0.9),)),
        WindowTranscript((said(" two", 0.0, 4.5),)),
    ]
    result = assemble(windows, transcripts, language="en", duration=25.0)
    assert result.text == "one two"
    assert [(s.id, s.start, s.end) for s in result.segments] == [(0, 0.0, 6.0), (1, 6.0, 10.0)]
    assert result.duration == 25.0
