"""The job runner with in-memory fakes of its ports (store, publisher, cancels, engine);
the port fakes live in tests/support/fakes.py, checked against the real adapters by
tests/integration/contracts/."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    AudioRef,
    DeadLetter,
    JobStatus,
    Priority,
    Source,
    SourcePosition,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from storage.errors import StorageUnavailableError
from storage.keys import S3Uri
from stream_workers.config import load_tuning
from stream_workers.engines.base import (
    ModelKey,
)
from stream_workers.engines.decoding import DEFAULT_BEAM_SIZE, Decoding
from stream_workers.job import Delivery, JobRunner, Outcome
from stream_workers.pool import ModelPool
from stream_workers.prefetch import Prefetcher
from tests.support.fakes import MemoryCancels, MemoryPublisher, MemoryStore
from tests.support.model_fakes import ScriptedLoader, ScriptedModel
from whisperstream.settings import load_settings

SETTINGS = load_settings()
KEY = ModelKey("faster-whisper", "tiny.en", "int8")


class Harness:
    def __init__(self, tmp: Path, jfk: Path, **tuning: Any) -> None:
        self.store = MemoryStore()
        self.publisher = MemoryPublisher()
        self.cancels = MemoryCancels()
        self.model = ScriptedModel(KEY)
        self.loader = ScriptedLoader(self.model)
        self.pool = ModelPool(self.loader, max_size=1)
        self.executor = concurrent.futures.ThreadPoolExecutor(2)
        self.jfk = jfk
        self.workdir = tmp
        self.runner = JobRunner(
            settings=SETTINGS,
            tuning=load_tuning(progress_interval_s=100, **tuning),
            worker_id="w-1",
            pool=self.pool,
            key_for=lambda engine, model: ModelKey("faster-whisper", model, "int8"),
            store=self.store,
            publisher=self.publisher,
            cancels=self.cancels,
            executor=self.executor,
            workdir=tmp,
        )

    def delivery(
        self,
        attempt: int = 1,
        audio: bytes | None = None,
        options: TranscriptionOptions | None = None,
    ) -> Delivery:
        job_id = new_event_id()
        uri = f"s3://audio/uploads/{job_id}/jfk.flac"
        self.store.put_bytes(S3Uri.parse(uri), self.jfk.read_bytes() if audio is None else audio)
        request = TranscriptionRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            priority=Priority.NORMAL,
            attempt=attempt,
            not_before=None,
            audio=AudioRef(uri, 1, "0" * 64, "audio/flac", "jfk.flac"),
            model="tiny.en",
            engine=None,
            language=None,
            task=Task.TRANSCRIBE,
            options=options or TranscriptionOptions(),
            owner=None,
            idempotency_key=None,
            callback_url=None,
            source=Source.KAFKA,
            correlation_id=None,
        )
        return Delivery(request, SourcePosition("requests", 0, 7), b"raw-bytes")


@pytest.fixture
def harness(tmp_path: Path, jfk_flac: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, jfk_flac)
    yield h
    h.executor.shutdown()


async def test_completed_job_writes_the_result_before_the_completed_event(
    harness: Harness,
) -> None:
    delivery = harness.delivery()
    assert await harness.runner.run(delivery) == Outcome.COMPLETED
    statuses = harness.publisher.statuses()
    assert statuses[0].status == JobStatus.PROCESSING
    assert statuses[0].worker_id == "w-1"
    assert statuses[0].engine == "faster-whisper"
    assert statuses[-1].status == JobStatus.COMPLETED
    seqs = [s.seq for s in statuses]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    # progress: 20 segments, at most one event per 5 % step
    progress = [s.progress for s in statuses[1:-1]]
    assert 0 < len(progress) <= 20
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(progress))
    result = statuses[-1].result
    assert result is not None
    document = harness.store.get_json(S3Uri.parse(result.result_uri))
    assert result.result_uri == f"s3://results/{delivery.request.job_id}.json"
    assert document["job_id"] == delivery.request.job_id
    assert document["model"] == "tiny.en"
    assert document["language"] == "en"
    assert len(document["segments"]) == 20
    assert result.text.startswith("word0 word1")
    assert statuses[-1].timing is not None


async def test_the_engine_gets_the_request_options_with_the_one_default_beam(
    harness: Harness,
) -> None:
    chosen = TranscriptionOptions(
        initial_prompt="Kennedy", beam_size=3, temperature=0.2, vad_filter=True
    )
    await harness.runner.run(harness.delivery(options=chosen))
    await harness.runner.run(harness.delivery())
    given, defaulted = (request.decoding for request in harness.model.requests)
    assert given == Decoding(
        beam_size=3, temperatures=(0.2,), vad_filter=True, initial_prompt="Kennedy"
    )
    assert defaulted == Decoding(beam_size=DEFAULT_BEAM_SIZE, temperatures=(0.0,))


async def test_redelivery_after_completion_emits_completed_again_without_transcribing(
    harness: Harness,
) -> None:
    delivery = harness.delivery()
    await harness.runner.run(delivery)
    calls = harness.model.calls
    harness.publisher.sent.clear()
    assert await harness.runner.run(delivery) == Outcome.ALREADY_COMPLETED
    assert harness.model.calls == calls
    [only] = harness.publisher.statuses()
    assert only.status == JobStatus.COMPLETED
    assert only.result is not None
    assert only.result.text.startswith("word0")


async def test_a_completed_event_sent_again_carries_the_first_ones_id(
    harness: Harness,
) -> None:
    # found by the chaos run: a worker killed between sending `completed` and committing
    # its offset sent a second `completed` with a new id, so the job was called back twice
    delivery = harness.delivery()
    await harness.runner.run(delivery)
    [first] = [s for s in harness.publisher.statuses() if s.status == JobStatus.COMPLETED]
    harness.publisher.sent.clear()
    await harness.runner.run(delivery)
    [again] = harness.publisher.statuses()
    assert again.event_id == first.event_id
    other = harness.delivery()
    await harness.runner.run(other)
    [its] = [s for s in harness.publisher.statuses() if s.job_id == other.request.job_id][-1:]
    assert its.status == JobStatus.COMPLETED
    assert its.event_id != first.event_id


async def test_a_cancelled_pending_job_never_starts(harness: Harness) -> None:
    delivery = harness.delivery()
    harness.cancels.cancel(delivery.request.job_id)
    assert await harness.runner.run(delivery) == Outcome.CANCELLED
    assert [s.status for s in harness.publisher.statuses()] == [JobStatus.CANCELLED]
    assert harness.model.calls == 0


async def test_a_running_job_stops_at_the_next_segment_when_cancelled(harness: Harness) -> None:
    delivery = harness.delivery()
    seen: list[int] = []

    def cancel_after_third(index: int) -> None:
        seen.append(index)
        if index == 2:
            harness.cancels.cancel(delivery.request.job_id)

    harness.model.during = cancel_after_third
    assert await harness.runner.run(delivery) == Outcome.CANCELLED
    assert seen == [0, 1, 2]
    statuses = harness.publisher.statuses()
    assert statuses[-1].status == JobStatus.CANCELLED
    # the cancelled event keeps the progress the job had reached
    progressed = [s.progress for s in statuses if s.status == JobStatus.PROCESSING]
    assert progressed[-1] > 0
    assert statuses[-1].progress == progressed[-1]
    assert not harness.store.exists(S3Uri("results", f"{delivery.request.job_id}.json"))


async def test_transient_failure_publishes_a_delayed_retry(harness: Harness) -> None:
    harness.store.fail_download = StorageUnavailableError("S3 unreachable")
    delivery = harness.delivery(attempt=2)
    assert await harness.runner.run(delivery) == Outcome.RETRYING
    topic, key, retry = harness.publisher.sent[-2]
    assert topic == SETTINGS.topic_requests_retry
    assert key == delivery.request.job_id
    assert isinstance(retry, TranscriptionRequested)
    assert retry.attempt == 3
    assert retry.not_before is not None
    # attempt 2 waits 5 s x 2 = 10 s, +/- 20 % jitter
    delay = retry.not_before - retry.occurred_at
    assert timedelta(seconds=7.9) <= delay <= timedelta(seconds=12.1)
    last = harness.publisher.statuses()[-1]
    assert last.status == JobStatus.RETRYING
    assert last.error is not None
    assert last.error.retryable


async def test_exhausted_retries_go_to_the_dlq_and_fail(harness: Harness) -> None:
    harness.store.fail_download = StorageUnavailableError("S3 unreachable")
    delivery = harness.delivery(attempt=5)
    assert await harness.runner.run(delivery) == Outcome.FAILED
    dead = [e for t, _, e in harness.publisher.sent if t == SETTINGS.topic_dlq]
    assert len(dead) == 1
    assert isinstance(dead[0], DeadLetter)
    assert dead[0].retry_count == 4
    assert dead[0].original_value == b"raw-bytes"
    assert dead[0].request == delivery.request
    assert harness.publisher.statuses()[-1].status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("audio", "error_type"),
    [(b"this is not audio at all" * 100, "AudioUndecodableError")],
)
async def test_undecodable_audio_is_permanent_after_a_repair_attempt(
    harness: Harness, audio: bytes, error_type: str
) -> None:
    delivery = harness.delivery(audio=audio)
    assert await harness.runner.run(delivery) == Outcome.FAILED
    dead = [e for t, _, e in harness.publisher.sent if t == SETTINGS.topic_dlq]
    assert isinstance(dead[0], DeadLetter)
    assert dead[0].error_type == error_type
    assert "after ffmpeg repair" in dead[0].error_message
    assert not [e for t, _, e in harness.publisher.sent if t == SETTINGS.topic_requests_retry]


async def test_truncated_audio_is_repaired_and_transcribed(harness: Harness) -> None:
    wav = harness.jfk.read_bytes()
    delivery = harness.delivery(audio=wav[: len(wav) // 2])
    assert await harness.runner.run(delivery) == Outcome.COMPLETED


async def test_missing_audio_object_is_permanent(harness: Harness) -> None:
    delivery = harness.delivery()
    harness.store.delete(S3Uri.parse(delivery.request.audio.uri))
    assert await harness.runner.run(delivery) == Outcome.FAILED
    last = harness.publisher.statuses()[-1]
    assert last.error is not None
    assert last.error.type == "ObjectNotFoundError"


async def test_soft_time_limit_stops_the_job_and_retries(tmp_path: Path, jfk_flac: Path) -> None:
    h = Harness(
        tmp_path,
        jfk_flac,
        job_time_limit_floor_s=0.001,
        job_time_limit_factor=0.00001,
        job_soft_time_limit_s=0.001,
        job_hard_time_limit_s=60,
    )
    h.model.during = lambda _i: time.sleep(0.01)
    try:
        assert await h.runner.run(h.delivery()) == Outcome.RETRYING
    finally:
        h.executor.shutdown()
    last = h.publisher.statuses()[-1]
    assert last.error is not None
    assert last.error.type == "TimeLimitExceededError"


async def test_events_sent_without_waiting_are_all_delivered_before_the_terminal_event(
    tmp_path: Path, jfk_flac: Path
) -> None:
    h = Harness(tmp_path, jfk_flac)
    h.publisher.delay = 0.05  # a slow broker: every acknowledgement takes 50 ms
    try:
        assert await h.runner.run(h.delivery()) == Outcome.COMPLETED
    finally:
        h.executor.shutdown()
    statuses = h.publisher.statuses()
    # everything was acknowledged before run() returned, in order, the terminal event last
    assert statuses[0].status == JobStatus.PROCESSING
    assert statuses[-1].status == JobStatus.COMPLETED
    assert len(statuses) > 2
    assert [s.seq for s in statuses] == sorted(s.seq for s in statuses)


async def test_a_prefetched_job_uses_the_audio_fetched_ahead(harness: Harness) -> None:
    delivery = harness.delivery()
    prefetcher = Prefetcher(harness.store, harness.workdir, limit=1, decode_max_s=600)
    prefetch = prefetcher.start(S3Uri.parse(delivery.request.audio.uri), 3600)
    assert prefetch is not None
    assert prefetcher.start(S3Uri.parse(delivery.request.audio.uri), 3600) is None  # the limit
    fetched = await prefetch.result()
    assert fetched is not None
    assert fetched.decoded is not None
    assert fetched.decoded.duration == pytest.approx(11.0)
    assert harness.store.downloads == 1
    prefetch.started()
    # a started job's audio no longer counts against the limit of jobs fetched ahead
    assert prefetcher.active == 0
    assert await harness.runner.run(delivery, prefetch) == Outcome.COMPLETED
    assert harness.store.downloads == 1  # not downloaded again
    assert harness.model.audio_seconds == [pytest.approx(11.0)]
    assert prefetch.folder.exists()
    prefetch.close()
    assert not prefetch.folder.exists()
    assert prefetcher.active == 0


async def test_long_audio_is_only_downloaded_ahead_and_decoded_when_the_job_starts(
    harness: Harness,
) -> None:
    delivery = harness.delivery()
    prefetcher = Prefetcher(harness.store, harness.workdir, limit=1, decode_max_s=5)
    prefetch = prefetcher.start(S3Uri.parse(delivery.request.audio.uri), 3600)
    assert prefetch is not None
    fetched = await prefetch.result()
    assert fetched is not None
    assert fetched.decoded is None
    assert fetched.path.exists()
    assert await harness.runner.run(delivery, prefetch) == Outcome.COMPLETED
    assert harness.store.downloads == 1
    assert harness.model.audio_seconds == [pytest.approx(11.0)]
    prefetch.close()
    assert not prefetch.folder.exists()


async def test_a_failed_prefetch_leaves_the_fetch_to_the_job(harness: Harness) -> None:
    delivery = harness.delivery()
    harness.store.fail_download = StorageUnavailableError("S3 unreachable for a moment")
    prefetcher = Prefetcher(harness.store, harness.workdir, limit=1, decode_max_s=600)
    prefetch = prefetcher.start(S3Uri.parse(delivery.request.audio.uri), 3600)
    assert prefetch is not None
    assert await prefetch.result() is None
    harness.store.fail_download = None
    assert await harness.runner.run(delivery, prefetch) == Outcome.COMPLETED
    assert harness.store.downloads == 2
    prefetch.close()
    assert prefetcher.active == 0


async def test_a_prefetch_closed_while_downloading_cleans_up_once_the_download_ends(
    harness: Harness,
) -> None:
    delivery = harness.delivery()
    downloading = threading.Event()
    release = threading.Event()
    download = harness.store.download_to

    def slow_download(uri: S3Uri, path: Path) -> Path:
        downloading.set()
        release.wait(10)
        return download(uri, path)

    harness.store.download_to = slow_download  # type: ignore[method-assign]
    prefetcher = Prefetcher(harness.store, harness.workdir, limit=1, decode_max_s=600)
    prefetch = prefetcher.start(S3Uri.parse(delivery.request.audio.uri), 3600)
    assert prefetch is not None
    assert await asyncio.to_thread(downloading.wait, 10), "the download never started"
    prefetch.close()  # the job was cancelled or the worker is stopping
    assert prefetcher.active == 1  # the download thread still runs: its slot is still taken
    release.set()
    for _ in range(200):
        if prefetcher.active == 0:
            break
        await asyncio.sleep(0.01)
    assert prefetcher.active == 0
    assert not prefetch.folder.exists()
