"""Cross-job batching (stream_workers/batching.py) with the scripted model and the real
model pool: which windows share a model call, in what order, and what one job's cancel,
time limit or bad input does to the others."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
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
from storage.keys import S3Uri
from stream_workers.batching import BatchGroup, WindowBatcher, batch_group
from stream_workers.config import load_tuning
from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    SegmentCallback,
    TranscriptResult,
)
from stream_workers.engines.decoding import Decoding
from stream_workers.engines.windows import Window
from stream_workers.errors import JobCancelledError
from stream_workers.job import Delivery, JobRunner, Outcome
from stream_workers.pool import ModelPool
from stream_workers.scheduler import SlotScheduler
from tests.support.audio import cut
from tests.support.fakes import MemoryCancels, MemoryPublisher, MemoryStore
from tests.support.model_fakes import (
    BASE,
    TINY,
    FakeLoader,
    ScriptedLoader,
    ScriptedModel,
)
from whisperstream.settings import load_settings

SETTINGS = load_settings()
KEY = ModelKey("faster-whisper", "tiny.en", "int8")
GROUP = batch_group(KEY, None, Task.TRANSCRIBE, Decoding())
WINDOW_S = 10.0


def ten_second_windows(samples: Samples, _vad_filter: bool) -> list[Window]:
    """A cutter the tests can count on: every 10 s of audio is one window."""
    step = int(WINDOW_S * SAMPLE_RATE)
    return [
        Window(start / SAMPLE_RATE, samples[start : start + step])
        for start in range(0, len(samples), step)
    ]


def audio(seconds: float) -> Samples:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def nothing(_done: float, _total: float) -> None:
    return None


class Gate:
    """Holds the model's first batch until opened, so the tests can queue work behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, _windows: Sequence[Samples]) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.open.wait(30)


class Bench:
    def __init__(self, batch_size: int, wait_s: float = 0.0) -> None:
        self.model = ScriptedModel(KEY)
        self.pool = ModelPool(ScriptedLoader(self.model), max_size=1)
        self.executor = concurrent.futures.ThreadPoolExecutor(2)
        self.batcher = WindowBatcher(
            self.pool,
            self.executor,
            batch_size=batch_size,
            wait_s=wait_s,
            acquire_timeout_s=30,
            cut=ten_second_windows,
        )

    def job(
        self,
        seconds: float,
        priority: Priority = Priority.NORMAL,
        on_progress: SegmentCallback = nothing,
    ) -> asyncio.Task[tuple[TranscriptResult, ModelKey]]:
        assert GROUP is not None
        return asyncio.ensure_future(
            self.batcher.transcribe(
                GROUP,
                priority,
                audio(seconds),
                vad_filter=False,
                on_progress=on_progress,
            )
        )

    async def queued(self, windows: int) -> None:
        """Return once `windows` windows wait for a batch (the batcher has no event for it)."""
        while self.batcher.queued() < windows:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def gated(self) -> Gate:
        """Start a 1-window job whose batch blocks; returns once the model holds it."""
        gate = Gate()
        self.model.before_batch = gate
        self.blocker = self.job(1.0)
        assert await asyncio.to_thread(gate.entered.wait, 30), "the first batch never started"
        return gate


MakeBench = Callable[..., Bench]


@pytest.fixture
def bench() -> Iterator[MakeBench]:
    made: list[Bench] = []

    def make(batch_size: int, wait_s: float = 0.0) -> Bench:
        made.append(Bench(batch_size, wait_s))
        return made[-1]

    yield make
    for each in made:
        each.executor.shutdown()


def test_only_compatible_requests_share_a_group() -> None:
    multilingual = ModelKey("faster-whisper", "base", "int8")
    assert batch_group(KEY, None, Task.TRANSCRIBE, Decoding()) == batch_group(
        KEY, "en", Task.TRANSCRIBE, Decoding(vad_filter=True)
    )
    assert batch_group(KEY, None, Task.TRANSCRIBE, Decoding()) != batch_group(
        KEY, None, Task.TRANSCRIBE, Decoding(beam_size=1)
    )
    assert batch_group(multilingual, "de", Task.TRANSCRIBE, Decoding()) != batch_group(
        multilingual, "fr", Task.TRANSCRIBE, Decoding()
    )
    # alone: language detection on a multilingual model, sampling, word timestamps
    assert batch_group(multilingual, None, Task.TRANSCRIBE, Decoding()) is None
    assert batch_group(KEY, None, Task.TRANSCRIBE, Decoding(temperatures=(0.2,))) is None
    assert batch_group(KEY, None, Task.TRANSCRIBE, Decoding(word_timestamps=True)) is None


async def test_jobs_waiting_together_share_model_calls_and_get_their_own_transcripts(
    bench: MakeBench,
) -> None:
    b = bench(batch_size=4)
    gate = await b.gated()
    jobs = [b.job(25.0), b.job(12.0), b.job(5.0)]  # 3 + 2 + 1 windows
    await b.queued(6)
    gate.open.set()
    results = await asyncio.gather(*jobs)
    await b.blocker
    # after the held batch: 6 windows in batches of at most 4, none alone
    assert [len(batch) for batch in b.model.batches] == [1, 4, 2]
    texts = [result.text for result, _ in results]
    assert texts[0] == "window of 10.0s window of 10.0s window of 5.0s"
    assert texts[1] == "window of 10.0s window of 2.0s"
    assert texts[2] == "window of 5.0s"
    first, _ = results[0]
    assert [(s.start, s.end) for s in first.segments] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert [s.id for s in first.segments] == [0, 1, 2]
    assert all(used == KEY for _, used in results)


async def test_a_lone_job_does_not_wait_for_company(bench: MakeBench) -> None:
    b = bench(batch_size=8, wait_s=3600)
    result, _ = await asyncio.wait_for(b.job(5.0), 30)
    assert result.text == "window of 5.0s"
    assert b.model.batches == [[5.0]]


async def test_a_lane_waits_for_a_job_still_decoding_its_audio(bench: MakeBench) -> None:
    b = bench(batch_size=8, wait_s=3600)
    with b.batcher.incoming():  # a second job is still downloading
        first = b.job(5.0)
        await asyncio.sleep(0.05)
        assert not first.done()
        second = b.job(3.0)
    await asyncio.gather(first, second)
    assert b.model.batches == [[5.0, 3.0]]


async def test_high_priority_windows_go_into_the_next_batch_first(bench: MakeBench) -> None:
    b = bench(batch_size=2)
    gate = await b.gated()
    normal = [b.job(4.0) for _ in range(3)]
    high = b.job(2.0, Priority.HIGH)
    await b.queued(4)
    gate.open.set()
    await asyncio.gather(*normal, high)
    assert b.model.batches[1][0] == 2.0  # the high job's window leads the next batch
    assert sorted(b.model.batches[1] + b.model.batches[2]) == [2.0, 4.0, 4.0, 4.0]


async def test_a_long_file_and_short_clips_share_each_batch(bench: MakeBench) -> None:
    b = bench(batch_size=4)
    gate = await b.gated()
    long_file = b.job(60.0)  # 6 windows of 10 s
    clips = [b.job(3.0) for _ in range(4)]
    await b.queued(10)
    gate.open.set()
    await asyncio.gather(long_file, *clips)
    first_batch = b.model.batches[1]
    assert 10.0 in first_batch
    assert 3.0 in first_batch


async def test_a_cancelled_job_leaves_the_next_batch_and_the_others_continue(
    bench: MakeBench,
) -> None:
    b = bench(batch_size=2)
    gate = await b.gated()
    cancelled = False

    def cancel_check(_done: float, _total: float) -> None:
        if cancelled:
            raise JobCancelledError("cancelled")

    doomed = b.job(30.0, on_progress=cancel_check)  # 3 windows of 10 s
    kept = b.job(14.0)  # 10 s + 4 s
    await b.queued(5)
    cancelled = True
    gate.open.set()
    with pytest.raises(JobCancelledError):
        await doomed
    result, _ = await kept
    assert result.text == "window of 10.0s window of 4.0s"
    assert b.model.batches[1:] == [[10.0, 4.0]]  # none of the cancelled job's windows


async def test_a_job_whose_caller_gave_up_leaves_the_queue(bench: MakeBench) -> None:
    b = bench(batch_size=2)
    gate = await b.gated()
    timed_out = b.job(20.0)
    kept = b.job(7.0)
    await b.queued(3)
    timed_out.cancel()  # what asyncio.wait_for does at the hard time limit
    gate.open.set()
    await kept
    assert b.model.batches[1:] == [[7.0]]


async def test_a_poisoned_job_in_a_batch_fails_alone(bench: MakeBench) -> None:
    b = bench(batch_size=4)
    gate = await b.gated()
    b.model.poisoned = lambda window: len(window) == int(6.0 * SAMPLE_RATE)
    before = b.job(3.0)
    poisoned = b.job(6.0)
    after = b.job(9.0)
    await b.queued(3)
    gate.open.set()
    with pytest.raises(ValueError, match="poisoned"):
        await poisoned
    assert (await before)[0].text == "window of 3.0s"
    assert (await after)[0].text == "window of 9.0s"


async def test_out_of_memory_in_a_batch_falls_back_to_the_smaller_model() -> None:
    loader = FakeLoader()
    loader.oom_on_run.add(BASE)
    pool = ModelPool(loader, max_size=2)
    group = batch_group(BASE, "en", Task.TRANSCRIBE, Decoding())
    assert isinstance(group, BatchGroup)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        batcher = WindowBatcher(
            pool, executor, batch_size=4, wait_s=0, acquire_timeout_s=5, cut=ten_second_windows
        )
        _, used = await batcher.transcribe(
            group, Priority.NORMAL, audio(12.0), vad_filter=False, on_progress=nothing
        )
    assert used == TINY
    assert pool.fallbacks() == [(BASE, TINY)]


async def test_a_window_that_stopped_short_is_finished_with_the_text_before_it_as_prompt(
    bench: MakeBench,
) -> None:
    b = bench(batch_size=4)
    b.model.stops_short = lambda seconds: 6.0 if seconds == 9.0 else None
    result, _ = await b.job(9.0)
    assert b.model.batches == [[9.0], [3.0]]  # the rest, from where decoding stopped
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 6.0), (6.0, 9.0)]
    assert result.text == "window of 9.0s window of 3.0s"
    first, rest = b.model.requests
    assert first.decoding.initial_prompt is None
    assert rest.decoding.initial_prompt == "window of 9.0s"


async def test_closing_the_batcher_leaves_queued_jobs_unfinished_not_failed(
    bench: MakeBench,
) -> None:
    b = bench(batch_size=2)
    gate = await b.gated()
    queued = b.job(5.0)
    await b.queued(1)
    await b.batcher.close()  # the worker stopping after its grace period
    gate.open.set()
    for job in (queued, b.blocker):
        with pytest.raises(asyncio.CancelledError):
            await job
    b.executor.shutdown(wait=True)
    assert b.model.batches == [[1.0]]  # only the batch that was already running
    with pytest.raises(asyncio.CancelledError):
        await b.job(2.0)


async def test_progress_is_reported_per_window_and_memory_figures_are_kept(
    bench: MakeBench,
) -> None:
    b = bench(batch_size=1)
    seen: list[tuple[float, float]] = []
    await b.job(25.0, on_progress=lambda done, total: seen.append((done, total)))
    assert (10.0, 25.0) in seen
    assert (20.0, 25.0) in seen
    stats = b.batcher.stats()
    assert stats.batches == 3
    assert stats.largest_batch == 1
    assert stats.peak_queued_windows == 3
    assert stats.peak_queued_seconds == pytest.approx(25.0)


# -- through the job runner --------------------------------------------------------------


class Runner:
    """A JobRunner with a batcher, the in-memory port fakes and the scripted model; every
    download waits until `together` jobs are downloading, so they reach the lane as one."""

    def __init__(self, tmp: Path, together: int) -> None:
        self.store = MemoryStore()
        self.publisher = MemoryPublisher()
        self.cancels = MemoryCancels()
        self.model = ScriptedModel(KEY)
        pool = ModelPool(ScriptedLoader(self.model), max_size=1)
        self.executor = concurrent.futures.ThreadPoolExecutor(3)
        self.batcher = WindowBatcher(
            pool, self.executor, batch_size=8, wait_s=30, acquire_timeout_s=30
        )
        barrier = threading.Barrier(together, timeout=30)
        download = self.store.download_to

        def download_together(uri: S3Uri, path: Path) -> Path:
            barrier.wait()
            return download(uri, path)

        self.store.download_to = download_together  # type: ignore[method-assign]
        self.runner = JobRunner(
            settings=SETTINGS,
            tuning=load_tuning(progress_interval_s=0),
            worker_id="w-1",
            pool=pool,
            key_for=lambda engine, model: ModelKey("faster-whisper", model, "int8"),
            store=self.store,
            publisher=self.publisher,
            cancels=self.cancels,
            executor=self.executor,
            workdir=tmp,
            batcher=self.batcher,
            engine_slots=SlotScheduler(1),
        )

    def delivery(self, audio_file: Path) -> Delivery:
        job_id = new_event_id()
        uri = f"s3://audio/uploads/{job_id}/{audio_file.name}"
        self.store.put_bytes(S3Uri.parse(uri), audio_file.read_bytes())
        request = TranscriptionRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            priority=Priority.NORMAL,
            attempt=1,
            not_before=None,
            audio=AudioRef(uri, 1, "0" * 64, "audio/flac", audio_file.name),
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
        return Delivery(request, SourcePosition("requests", 0, 7), b"raw-bytes")

    def statuses_of(self, delivery: Delivery) -> list[JobStatus]:
        job_id = delivery.request.job_id
        return [s.status for s in self.publisher.statuses() if s.job_id == job_id]


@pytest.fixture
def clips(tmp_path: Path, jfk_flac: Path) -> list[Path]:
    """jfk.flac (11 s) and two cuts of it, 5 s and 8 s long."""
    return [
        jfk_flac,
        cut(jfk_flac, tmp_path / "five.flac", 0, 5),
        cut(jfk_flac, tmp_path / "eight.flac", 2, 8),
    ]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    made = Runner(tmp_path / "work", together=3)
    (tmp_path / "work").mkdir()
    yield made
    made.executor.shutdown()


async def test_jobs_run_together_share_one_model_call_and_complete_each(
    runner: Runner, clips: list[Path]
) -> None:
    deliveries = [runner.delivery(clip) for clip in clips]
    outcomes = await asyncio.gather(*(runner.runner.run(d) for d in deliveries))
    assert outcomes == [Outcome.COMPLETED] * 3
    assert [sorted(batch) for batch in runner.model.batches] == [
        [pytest.approx(5.0, abs=0.05), pytest.approx(8.0, abs=0.05), pytest.approx(11.0)]
    ]
    for delivery, seconds in zip(deliveries, ("11.0", "5.0", "8.0"), strict=True):
        statuses = runner.statuses_of(delivery)
        assert statuses[0] == JobStatus.PROCESSING
        assert statuses[-1] == JobStatus.COMPLETED
        [completed] = [
            s
            for s in runner.publisher.statuses()
            if s.job_id == delivery.request.job_id and s.result is not None
        ]
        assert completed.result is not None
        assert completed.result.text == f"window of {seconds}s"


async def test_a_poisoned_job_in_a_batch_goes_to_the_dlq_and_the_others_complete(
    runner: Runner, clips: list[Path]
) -> None:
    runner.model.poisoned = lambda window: abs(len(window) / SAMPLE_RATE - 5.0) < 0.05
    deliveries = [runner.delivery(clip) for clip in clips]
    outcomes = await asyncio.gather(*(runner.runner.run(d) for d in deliveries))
    assert outcomes == [Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPLETED]
    dead = [e for t, _, e in runner.publisher.sent if t == SETTINGS.topic_dlq]
    assert all(isinstance(d, DeadLetter) for d in dead)
    assert [d.job_id for d in dead if isinstance(d, DeadLetter)] == [deliveries[1].request.job_id]
    assert isinstance(dead[0], DeadLetter)
    assert dead[0].error_type == "ValueError"
    assert runner.statuses_of(deliveries[1])[-1] == JobStatus.FAILED


async def test_a_job_cancelled_while_its_batch_waits_ends_cancelled_and_the_others_complete(
    runner: Runner, clips: list[Path]
) -> None:
    gate = Gate()
    runner.model.before_batch = gate
    # a fourth job takes the model first, so the three queue behind it
    first = Runner.delivery(runner, clips[0])
    blocker = asyncio.ensure_future(
        runner.batcher.transcribe(
            batch_group(KEY, None, Task.TRANSCRIBE, Decoding()),  # type: ignore[arg-type]
            Priority.NORMAL,
            audio(1.0),
            vad_filter=False,
            on_progress=nothing,
        )
    )
    assert await asyncio.to_thread(gate.entered.wait, 30)
    deliveries = [first, runner.delivery(clips[1]), runner.delivery(clips[2])]
    runs = [asyncio.ensure_future(runner.runner.run(d)) for d in deliveries]
    # all three queued behind the held batch (the batcher has no event to wait on)
    while runner.batcher.queued() < 3:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    runner.cancels.cancel(deliveries[1].request.job_id)
    gate.open.set()
    outcomes = await asyncio.gather(*runs)
    await blocker
    assert outcomes == [Outcome.COMPLETED, Outcome.CANCELLED, Outcome.COMPLETED]
    assert runner.statuses_of(deliveries[1])[-1] == JobStatus.CANCELLED
    assert len(runner.model.batches) == 2
    assert sorted(runner.model.batches[1]) == [pytest.approx(8.0, abs=0.05), pytest.approx(11.0)]
