"""Worker processes against the real broker and S3: each behaviour of issue 5."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import DeadLetter, JobStatus, Priority, WorkerHeartbeat
from storage.keys import result_uri
from tests.integration.workers.harness import (
    Bus,
    completed_text,
    concat_audio,
    stop,
    wait_for,
    worker,
    worker_env,
)
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAST_RETRIES = {"RETRY_BASE_S": "0.3", "RETRY_JITTER": "0.1"}


@pytest.fixture
def bus(fresh_topics: Settings) -> Iterator[Bus]:
    bus = Bus(fresh_topics)
    yield bus
    bus.close()


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalpha() or c == " ").split()


def test_a_job_completes_with_its_result_document_and_heartbeats(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    env = worker_env(running_stack, fresh_topics)
    with worker(env, tmp_path / "worker.log"):
        request = bus.request(jfk_flac)
        wait_for("completed", lambda: bus.terminal(request.job_id))
        beats = wait_for(
            "a heartbeat",
            lambda: bus.read(fresh_topics.topic_workers, WorkerHeartbeat),
        )
    assert _words(completed_text(bus, request.job_id))[:4] == ["and", "so", "my", "fellow"]
    statuses = bus.statuses(request.job_id)
    assert statuses[0].status == JobStatus.PROCESSING
    assert statuses[0].worker_id is not None
    document = bus.store.get_json(result_uri(fresh_topics.results_bucket, request.job_id))
    assert document["job_id"] == request.job_id
    assert document["engine"] == "faster-whisper"
    assert document["model"] == "tiny.en"
    assert document["language"] == "en"
    assert document["segments"]
    assert beats[0].pool.loads >= 1
    assert beats[0].loaded_models == ["faster-whisper/tiny.en/int8"]


def test_high_priority_job_overtakes_a_normal_backlog(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    normals = [bus.request(jfk_flac) for _ in range(6)]
    high = bus.request(jfk_flac, Priority.HIGH)
    env = worker_env(running_stack, fresh_topics, WORKER_CONCURRENCY="1")
    with worker(env, tmp_path / "worker.log"):
        wait_for("the high job", lambda: bus.terminal(high.job_id))
        wait_for("every job", lambda: all(bus.terminal(r.job_id) for r in normals))
    starts = sorted((bus.statuses(r.job_id)[0].occurred_at, r.priority) for r in [*normals, high])
    order = [priority for _, priority in starts]
    # at most the one normal job that was already running when the high one arrived
    assert order.index(Priority.HIGH) <= 1, order


def test_cancel_pending_and_running_jobs(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    long_audio = concat_audio(jfk_flac, 5, tmp_path / "long.flac")
    pending = bus.request(jfk_flac)
    bus.cancel(pending.job_id)
    env = worker_env(running_stack, fresh_topics, PROGRESS_INTERVAL_S="0", PROGRESS_STEP="0")
    with worker(env, tmp_path / "worker.log"):
        wait_for("the pending job", lambda: bus.terminal(pending.job_id))
        running = bus.request(long_audio)
        wait_for(
            "progress",
            lambda: any(e.progress > 0 for e in bus.statuses(running.job_id)),
        )
        bus.cancel(running.job_id)
        final = wait_for("the running job", lambda: bus.terminal(running.job_id), timeout=30)
    assert [e.status for e in bus.statuses(pending.job_id)] == [JobStatus.CANCELLED]
    assert final.status == JobStatus.CANCELLED
    assert max(e.progress for e in bus.statuses(running.job_id)) < 1.0
    assert not bus.store.exists(result_uri(fresh_topics.results_bucket, running.job_id))


def test_retry_after_a_transient_failure_then_success(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    request = bus.request(jfk_flac)
    broken_s3 = worker_env(
        running_stack, fresh_topics, S3_ENDPOINT="http://127.0.0.1:9", RETRY_BASE_S="8"
    )
    with worker(broken_s3, tmp_path / "broken.log") as first:
        wait_for(
            "retrying",
            lambda: any(e.status == JobStatus.RETRYING for e in bus.statuses(request.job_id)),
        )
        # the delayed retry is held unacked; SIGTERM must leave it for redelivery
        assert stop(first) == 0
    with worker(worker_env(running_stack, fresh_topics), tmp_path / "healthy.log"):
        wait_for("completed", lambda: bus.terminal(request.job_id))
    assert _words(completed_text(bus, request.job_id))[:2] == ["and", "so"]
    attempts = {e.attempt for e in bus.statuses(request.job_id)}
    assert attempts == {1, 2}
    retries = bus.read(fresh_topics.topic_requests_retry, type(request))
    assert [r.attempt for r in retries] == [2]


def test_exhausted_retries_end_in_the_dlq(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    request = bus.request(jfk_flac)
    env = worker_env(running_stack, fresh_topics, S3_ENDPOINT="http://127.0.0.1:9", **FAST_RETRIES)
    with worker(env, tmp_path / "worker.log"):
        final = wait_for("failed", lambda: bus.terminal(request.job_id), timeout=120)
    assert final.status == JobStatus.FAILED
    assert final.attempt == 5
    [dead] = wait_for("dead letter", lambda: bus.read(fresh_topics.topic_dlq, DeadLetter))
    assert dead.job_id == request.job_id
    assert dead.retry_count == 4
    assert dead.error_type == "StorageUnavailableError"
    assert dead.request is not None
    assert dead.request.attempt == 5


def test_poison_message_goes_to_the_dlq_and_the_agent_goes_on(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    garbage = b"\xc3\x01 definitely not an event"
    bus.send(fresh_topics.topic_requests_normal, "poison", garbage)
    env = worker_env(running_stack, fresh_topics)
    with worker(env, tmp_path / "worker.log"):
        after = bus.request(jfk_flac)
        wait_for("the next job", lambda: bus.terminal(after.job_id))
        [dead] = wait_for("dead letter", lambda: bus.read(fresh_topics.topic_dlq, DeadLetter))
    assert dead.original_value == garbage
    assert dead.error_type == "UndecodableEvent"
    assert dead.source.topic == fresh_topics.topic_requests_normal
    assert dead.request is None


def test_redelivered_job_with_a_stored_result_completes_without_transcribing(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    job_id = "7a3f4c1e-0000-4000-8000-000000000042"
    stored = {
        "job_id": job_id,
        "text": "stored earlier",
        "segments": [],
        "language": "en",
        "language_probability": 1.0,
        "duration": 11.0,
        "engine": "faster-whisper",
        "model": "tiny.en",
    }
    bus.store.put_bytes(
        result_uri(fresh_topics.results_bucket, job_id),
        json.dumps(stored).encode(),
        "application/json",
    )
    bus.request(jfk_flac, job_id=job_id)
    with worker(worker_env(running_stack, fresh_topics), tmp_path / "worker.log"):
        wait_for("completed", lambda: bus.terminal(job_id))
    statuses = bus.statuses(job_id)
    assert [e.status for e in statuses] == [JobStatus.COMPLETED]
    assert completed_text(bus, job_id) == "stored earlier"


def test_two_workers_share_the_work(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    env = worker_env(running_stack, fresh_topics)
    with worker(env, tmp_path / "a.log"), worker(env, tmp_path / "b.log"):
        wait_for(
            "two heartbeats",
            lambda: (
                len({b.worker_id for b in bus.read(fresh_topics.topic_workers, WorkerHeartbeat)})
                == 2
            ),
        )
        requests = [bus.request(jfk_flac) for _ in range(8)]
        wait_for("all jobs", lambda: all(bus.terminal(r.job_id) for r in requests), timeout=150)
    workers = {bus.statuses(r.job_id)[0].worker_id for r in requests}
    assert len(workers) == 2
    for r in requests:
        completed = [e for e in bus.statuses(r.job_id) if e.status == JobStatus.COMPLETED]
        assert len(completed) == 1
