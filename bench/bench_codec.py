"""Codec throughput for TranscriptionRequested on one core.

Run: ``python -m bench.bench_codec [--seconds 1.0]``. Prints operations per second for
encode, decode and a full round trip (encode + decode) of a request with every optional
field set and one with every optional field empty, best of five runs.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.report import Figure, add_json_option, emit
from schemas.codec import EventCodec
from schemas.events import (
    AudioRef,
    Priority,
    Source,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
)

JOB = "6f1c1e7a-3b8e-4c55-9a57-0d6f9e3c2b10"
WHEN = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def requests() -> dict[str, TranscriptionRequested]:
    audio = AudioRef(
        f"s3://audio/uploads/{JOB}/jfk.flac", 360_000, "9f" * 32, "audio/flac", "jfk.flac"
    )
    full = TranscriptionRequested(
        event_id="0b5f4c52-8a39-4d84-b1b3-7e3f6b9c2a11",
        job_id=JOB,
        occurred_at=WHEN,
        priority=Priority.HIGH,
        attempt=2,
        not_before=WHEN,
        audio=audio,
        model="tiny.en",
        engine="faster-whisper",
        language="en",
        task=Task.TRANSCRIBE,
        options=TranscriptionOptions("Kennedy", True, 0.2, 5, True),
        owner="alice",
        idempotency_key="upload-42",
        callback_url="https://example.test/hook",
        source=Source.API,
        correlation_id="req-7",
    )
    minimal = TranscriptionRequested(
        event_id=full.event_id,
        job_id=JOB,
        occurred_at=WHEN,
        priority=Priority.NORMAL,
        attempt=1,
        not_before=None,
        audio=audio,
        model="tiny.en",
        engine=None,
        language=None,
        task=Task.TRANSCRIBE,
        options=TranscriptionOptions(),
        owner=None,
        idempotency_key=None,
        callback_url=None,
        source=Source.KAFKA,
        correlation_id=None,
    )
    return {"all optional fields set": full, "all optional fields None": minimal}


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Best of five runs, in operations per second."""
    best = 0.0
    for _ in range(5):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 5
        while (now := time.perf_counter()) < deadline:
            for _ in range(1000):
                operation()
            count += 1000
        best = max(best, count / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    add_json_option(parser)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    codec = EventCodec()
    print(
        f"{'TranscriptionRequested':28} {'bytes':>6} "
        f"{'encode/s':>10} {'decode/s':>10} {'enc+dec/s':>10}"
    )
    figures: list[Figure] = []
    for label, event in requests().items():
        value = codec.encode(event)
        assert codec.decode(value, TranscriptionRequested) == event

        def round_trip(event: TranscriptionRequested = event) -> object:
            return codec.decode(codec.encode(event), TranscriptionRequested)

        def decode(value: bytes = value) -> object:
            return codec.decode(value, TranscriptionRequested)

        def encode(event: TranscriptionRequested = event) -> object:
            return codec.encode(event)

        rates = [rate(f, args.seconds) for f in (encode, decode, round_trip)]
        print(f"{label:28} {len(value):>6} " + " ".join(f"{r:>10,.0f}" for r in rates))
        figures += [
            Figure(f"encode, {label}", rates[0], "events/s"),
            Figure(f"decode, {label}", rates[1], "events/s"),
            Figure(f"encode + decode, {label}", rates[2], "events/s", ">= 50,000"),
        ]
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
