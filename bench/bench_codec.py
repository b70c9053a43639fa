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

from bench.report import Figure, add_json_option, emit
from schemas.codec import EventCodec
from schemas.events import TranscriptionRequested
from tests.support.sample_events import full_request, minimal_request


def requests() -> dict[str, TranscriptionRequested]:
    return {
        "all optional fields set": full_request(),
        "all optional fields None": minimal_request(),
    }


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
            # no target: the old 50,000/s was retired (issue 12), nothing needs that rate
            Figure(f"encode + decode, {label}", rates[2], "events/s"),
        ]
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
