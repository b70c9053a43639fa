"""Checks made after a run of the whole system (bench/chaos.py, bench/scale_out.py): each
job completed exactly once, every way it can be seen, and the projector's tables equal a
rebuild by replay."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.chaos_receiver import ChaosReceiver
from schemas.codec import EventCodec
from schemas.events import JobStatusChanged
from tests.support.kafka_read import records_to_end
from tests.support.up import wait_until

PROJECTED = {
    "transcription_jobs": "SELECT * FROM transcription_jobs ORDER BY id",
    "transcription_results": "SELECT * FROM transcription_results ORDER BY job_id",
    "error_logs": "SELECT * FROM error_logs ORDER BY id",
}


def psycopg_url(database_url: str) -> str:
    """The settings' SQLAlchemy URL as psycopg takes it."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", database_url)


def all_rows(cursor: psycopg.Cursor[Any], query: str) -> list[tuple[Any, ...]]:
    cursor.execute(query)
    return [tuple(row) for row in cursor.fetchall()]


def projected_tables(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        return {table: all_rows(cursor, query) for table, query in PROJECTED.items()}


def wait_projected(database_url: str, expected: set[str], timeout: float = 120) -> None:
    """Until the projection shows every job completed with its result: the callbacks come
    from the notifier, which reads the status topic beside the projectors, not after them,
    so the last callbacks can arrive before their jobs are folded in."""
    query = (
        "SELECT count(*) FROM transcription_jobs j JOIN transcription_results r "
        "ON r.job_id = j.id WHERE j.status = 'completed' AND j.id::text = ANY(%s)"
    )

    def caught_up() -> bool | None:
        with psycopg.connect(database_url) as connection:
            row = connection.execute(query, (sorted(expected),)).fetchone()
        return True if row is not None and row[0] >= len(expected) else None

    # past the timeout the verdict names the jobs the projection is missing
    with contextlib.suppress(AssertionError):
        wait_until("the projection", caught_up, timeout)


@dataclass(frozen=True)
class StatusEvent:
    job_id: str
    event_id: str
    status: str
    worker_id: str | None
    occurred_at: float
    """seconds since the epoch"""


def status_events(bootstrap: str) -> list[StatusEvent]:
    """Every record of the status topic, decoded, in no particular order across jobs."""
    codec = EventCodec()
    found = []
    try:
        for _, _, value in records_to_end(bootstrap, "transcription.status", timeout=120):
            assert value is not None
            event = codec.decode(value, JobStatusChanged)
            found.append(
                StatusEvent(
                    event.job_id,
                    event.event_id,
                    str(event.status),
                    event.worker_id,
                    event.occurred_at.timestamp(),
                )
            )
    finally:
        codec.close()
    return found


def completed_counts(events: list[StatusEvent]) -> tuple[Counter[str], int]:
    """Distinct `completed` events per job, and the records that repeat one. A copy of
    one event (the same event id, sent again by a worker that redelivered the job) is one
    event, as every consumer deduplicates on the id."""
    ids: dict[str, set[str]] = {}
    records = 0
    for event in events:
        if event.status == "completed":
            records += 1
            ids.setdefault(event.job_id, set()).add(event.event_id)
    copies = records - sum(len(found) for found in ids.values())
    return Counter({job_id: len(found) for job_id, found in ids.items()}), copies


def succeeded_deliveries(database_url: str, expected: set[str]) -> Counter[str]:
    """Succeeded `transcription.completed` rows of webhook_deliveries per job, once the
    notifier has recorded them all (it records after the receiver answered)."""
    query = (
        "SELECT job_id::text FROM webhook_deliveries "
        "WHERE status = 'succeeded' AND event_type = 'transcription.completed'"
    )
    counted: Counter[str] = Counter()

    def recorded() -> bool | None:
        nonlocal counted
        with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
            counted = Counter(row[0] for row in all_rows(cursor, query))
        return True if set(counted) >= expected else None

    with contextlib.suppress(AssertionError):
        wait_until("delivery rows", recorded, 120)
    return counted


@dataclass
class JobsSeen:
    failures: list[str] = field(default_factory=list)
    jobs: set[str] = field(default_factory=set)
    """the job ids the database knows"""
    completed_copies: int = 0
    """records on the status topic that repeat a `completed` event (same id)"""


def check_jobs(
    database_url: str, bootstrap: str, receiver: ChaosReceiver, expected: set[str]
) -> JobsSeen:
    """Each expected job completed exactly once: its row, its result row, its `completed`
    event, its webhook and its delivery row; no job nobody asked for."""
    seen = JobsSeen()
    fail = seen.failures.append
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        jobs = dict(all_rows(cursor, "SELECT id::text, status FROM transcription_jobs"))
        results = Counter(
            row[0] for row in all_rows(cursor, "SELECT job_id::text FROM transcription_results")
        )
    seen.jobs = set(jobs)
    callbacks = receiver.completed_by_job()
    # a job with no callback has no delivery row to wait for: it fails below at once
    succeeded = succeeded_deliveries(database_url, expected & set(callbacks))
    extra = set(jobs) - expected
    if extra:
        fail(f"{len(extra)} jobs nobody was told of: {sorted(extra)[:5]}")
    completed, seen.completed_copies = completed_counts(status_events(bootstrap))
    for job_id in sorted(expected):
        found = {
            "job status": jobs.get(job_id),
            "result rows": results[job_id],
            "completed events": completed[job_id],
            "webhook ids received": len(callbacks.get(job_id, [])),
            "succeeded deliveries": succeeded[job_id],
        }
        if found != {**dict.fromkeys(found, 1), "job status": "completed"}:
            fail(f"{job_id}: {found}")
    if receiver.forged:
        fail(f"{receiver.forged} callbacks failed signature verification")
    return seen


def rebuild_differences(env: dict[str, str], database_url: str) -> list[str]:
    """Run `whisperstream replay --rebuild` (online) and compare the tables before and
    after: what the live projector(s) folded must equal a fold of the topics."""
    live = projected_tables(database_url)
    rebuilt = subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", "replay", "--rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if rebuilt.returncode != 0:
        return [f"replay --rebuild failed: {rebuilt.stdout}{rebuilt.stderr}"]
    after = projected_tables(database_url)
    differences = []
    for table in PROJECTED:
        if live[table] != after[table]:
            differ = set(live[table]) ^ set(after[table])
            differences.append(f"{table} differs from its rebuild: {sorted(map(str, differ))[:4]}")
    return differences
