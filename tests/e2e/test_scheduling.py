"""Issue 8, end to end: cancelling pending and running jobs, and priority under a backlog.

These run on a system of their own with one job slot (WORKER_CONCURRENCY=1), so that a
long job holds the worker and everything behind it is provably still waiting.
WHISPER_BATCH_SIZE=1 makes faster-whisper decode (and check for a cancel) window by
window; with its batched pipeline a cancel is seen only between batches of 8 windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.audio import JFK_SECONDS, cut, duration_s, repeat
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

ENGINES = ("faster-whisper", "openai-whisper")
LONG_REPEATS = 36
"""jfk.flac 36 times: 6.6 minutes of speech, 15-40 s of work for either engine here (so
that the fixed costs of a cancel are small beside the job's length)."""
BACKLOG = 12
POLL_S = 0.2


@dataclass(frozen=True)
class Clips:
    long: Path
    short: tuple[Path, ...]


@pytest.fixture(scope="module")
def one_slot_system() -> Iterator[System]:
    with running_system(WORKER_CONCURRENCY="1", WHISPER_BATCH_SIZE="1") as running:
        yield running


@pytest.fixture(scope="module")
def clips(jfk_flac: Path, tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("scheduling-audio")
    long = repeat(jfk_flac, folder / "long.flac", LONG_REPEATS)
    assert duration_s(long) == pytest.approx(LONG_REPEATS * JFK_SECONDS, abs=1.0)
    short = tuple(
        cut(jfk_flac, folder / f"short-{i}.flac", start, length)
        for i, (start, length) in enumerate([(0.0, 3.0), (3.0, 2.5), (5.5, 2.0), (8.0, 3.0)])
    )
    return Clips(long, short)


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def ran_for(job: dict[str, Any]) -> timedelta:
    return moment(job["completed_at"]) - moment(job["started_at"])


def submit(client: httpx.Client, audio: Path, **fields: str) -> str:
    response = client.post(
        "/transcribe", data=fields, files={"file": (audio.name, audio.read_bytes(), "audio/flac")}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def poll(
    client: httpx.Client,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 120,
) -> dict[str, Any]:
    """Poll the job until `until` holds; fail if it ends (or times out) before that."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/transcribe/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        assert job["status"] not in ("completed", "failed", "cancelled"), (
            f"job {job_id} ended before it was {what}: {job}"
        )
        time.sleep(POLL_S)
    raise AssertionError(f"job {job_id} not {what} after {timeout}s: {job}")


def processing(job: dict[str, Any]) -> bool:
    return bool(job["status"] == "processing")


def processing_with_progress(job: dict[str, Any]) -> bool:
    return bool(job["status"] == "processing" and job["progress"] > 0)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("engine", ENGINES)
def test_cancel_while_pending_and_while_processing(
    one_slot_system: System, clips: Clips, engine: str
) -> None:
    system = one_slot_system
    with system.http() as client:
        # a long job takes the only slot; a short one waits behind it and is cancelled
        reference_id = submit(client, clips.long, engine=engine)
        poll(client, reference_id, processing, "processing")
        pending_id = submit(client, clips.short[0], engine=engine)
        cancel = client.delete(f"/transcribe/{pending_id}")
        assert cancel.status_code == 202, cancel.text
        assert cancel.json() == {
            "job_id": pending_id,
            "status": "pending",
            "cancel_requested": True,
        }

        reference = system.wait_for_job(reference_id, timeout=300)
        pending = system.wait_for_job(pending_id, timeout=60)
        assert reference["status"] == "completed", reference
        assert pending["status"] == "cancelled", pending
        assert pending["started_at"] is None, "a job cancelled while pending must never start"
        assert pending["cancel_requested_at"] is not None
        assert pending["completed_at"] is not None
        assert pending["result"] is None
        assert moment(pending["completed_at"]) >= moment(reference["completed_at"])
        assert client.get(f"/transcribe/{pending_id}", params={"format": "text"}).status_code == 409
        assert client.delete(f"/transcribe/{pending_id}").status_code == 409

        # the same long audio again, cancelled once the worker reports progress
        running_id = submit(client, clips.long, engine=engine)
        seen = poll(client, running_id, processing_with_progress, "processing with progress")
        assert seen["progress"] < 1.0
        cancel = client.delete(f"/transcribe/{running_id}")
        assert cancel.status_code == 202, cancel.text
        cancelled = system.wait_for_job(running_id, timeout=300)
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["result"] is None
        assert cancelled["progress"] < 1.0
        assert client.get(f"/transcribe/{running_id}", params={"format": "json"}).status_code == 409

        # the slot is free again: the next job runs to the end
        after_id = submit(client, clips.short[1], engine=engine)
        assert system.wait_for_job(after_id, timeout=120)["status"] == "completed"

    # it stopped early: well before the same audio took to finish uncancelled
    full = ran_for(reference)
    assert ran_for(cancelled) < full * 0.5, (ran_for(cancelled), full, cancelled)
    requested = moment(cancelled["cancel_requested_at"])
    assert moment(cancelled["completed_at"]) - requested < full * 0.25, (cancelled, full)


@pytest.mark.timeout(400)
def test_high_priority_job_starts_before_the_normal_backlog(
    one_slot_system: System, clips: Clips
) -> None:
    system = one_slot_system
    with system.http() as client:
        blocker_id = submit(client, clips.long)
        poll(client, blocker_id, processing, "processing")
        normal_ids = [submit(client, clips.short[i % len(clips.short)]) for i in range(BACKLOG)]
        high_id = submit(client, clips.short[0], priority="high")

    high = system.wait_for_job(high_id, timeout=300)
    blocker = system.wait_for_job(blocker_id, timeout=300)
    normals = [system.wait_for_job(job_id, timeout=300) for job_id in normal_ids]
    assert all(job["status"] == "completed" for job in [high, blocker, *normals])
    assert high["priority"] == "high"
    assert all(job["priority"] == "normal" for job in normals)

    accepted = moment(high["created_at"])
    # Setup check: the long job still held the only slot for a while after the high job
    # was accepted, so the high request reached the worker while the backlog waited.
    assert moment(blocker["completed_at"]) - accepted > timedelta(seconds=3), (blocker, high)
    backlog = [job for job in normals if moment(job["started_at"]) > accepted]
    assert len(backlog) == BACKLOG, "every normal job was still waiting when the high one came"

    high_started = moment(high["started_at"])
    assert high_started >= moment(blocker["completed_at"])
    late = [job["job_id"] for job in backlog if moment(job["started_at"]) <= high_started]
    assert late == [], f"normal jobs that started before the high one: {late}"
