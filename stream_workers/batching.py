"""Cross-job batching: the 30 s windows of many jobs decoded together in one model call.

Jobs that want the same model with compatible options (a `BatchGroup`: engine, model,
compute type, task, language, beam size, temperature 0, prompt) hand their decoded
audio to one lane. The lane cuts nothing itself (engines/windows.py does, per job) and
only decides which windows go into the next model call:

- at most `batch_size` windows, high-priority jobs' first, then in a fair order between
  jobs (window i of the n-th job to arrive ranks as n + i), so a long file and a stream
  of short clips share each batch instead of one waiting for the other;
- when fewer are queued it waits up to `wait_s` for more, but only while some job is
  still fetching or decoding its audio (`incoming`): a lone job never waits, and no batch
  waits for a slow download beyond `wait_s`;
- before each batch every queued job is checked (cancel, soft time limit: its progress
  callback raises), and a job that stopped leaves the queue; a job whose caller stopped
  waiting (hard time limit) is dropped the same way;
- a model call that fails with several jobs in it is repeated job by job, so one job's
  bad input fails that job alone; out of memory is the pool's business (it falls back to
  the next smaller model), and a pool timeout fails the batch's jobs (all transient).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from schemas.events import Priority, Task
from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    SegmentCallback,
    Transcriber,
    TranscribeRequest,
    TranscriptResult,
)
from stream_workers.engines.decoding import Decoding
from stream_workers.engines.windows import (
    Window,
    WindowTranscript,
    assemble,
    cut_windows,
    follow_up,
)
from stream_workers.errors import ModelOutOfMemoryError, PoolTimeoutError
from stream_workers.pool import ModelPool

log = logging.getLogger(__name__)

_PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1}

Cutter = Callable[[Samples, bool], list[Window]]
"""Cuts a job's audio into windows (audio, vad_filter); engines/windows.py's by default."""


def _cut(samples: Samples, vad_filter: bool) -> list[Window]:
    return cut_windows(samples, vad_filter=vad_filter)


@dataclass(frozen=True, slots=True)
class BatchGroup:
    """What every window of one model call must share."""

    key: ModelKey
    request: TranscribeRequest
    """Language set, `vad_filter` off (it only changes where a job's audio is cut)."""


def batch_group(
    key: ModelKey, language: str | None, task: Task, decoding: Decoding
) -> BatchGroup | None:
    """The group a job's windows may be batched in, or None when it must run alone.

    Alone: sampling (temperature above 0, or a fallback schedule), word timestamps, and
    language detection on a multilingual model (detection is per job, not per batch).
    """
    if decoding.temperatures != (0.0,) or decoding.word_timestamps:
        return None
    if language is None:
        if not key.model.endswith(".en"):
            return None
        language = "en"
    shared = dataclasses.replace(decoding, vad_filter=False)
    return BatchGroup(key, TranscribeRequest(language, task, shared))


@dataclass(frozen=True, slots=True)
class BatchStats:
    batches: int
    windows: int
    largest_batch: int
    peak_queued_windows: int
    peak_queued_seconds: float


class _Job:
    def __init__(
        self,
        *,
        order: int,
        priority: Priority,
        windows: list[Window],
        on_progress: SegmentCallback,
        future: asyncio.Future[tuple[TranscriptResult, ModelKey]],
        group: BatchGroup,
        duration: float,
    ) -> None:
        self.order = order
        self.rank = _PRIORITY_RANK.get(priority, 1)
        self.windows = windows
        self.on_progress = on_progress
        self.future = future
        self.group = group
        self.duration = duration
        self.transcripts: list[WindowTranscript | None] = [None] * len(windows)
        # a follow-up window is decoded with the text before it as its prompt, as one-at-a-
        # time decoding conditions its next window on the previous text
        self.requests: list[TranscribeRequest] = [group.request] * len(windows)
        self.total_s = sum(window.seconds for window in windows)
        self.done_s = 0.0
        self.used: ModelKey = group.key

    @property
    def finished(self) -> bool:
        return self.future.done()

    def _prompted(self, before: WindowTranscript) -> TranscribeRequest:
        request = self.group.request
        said = "".join(segment.text for segment in before.segments).strip()
        prompt = " ".join(p for p in (request.decoding.initial_prompt, said) if p)
        decoding = dataclasses.replace(request.decoding, initial_prompt=prompt or None)
        return dataclasses.replace(request, decoding=decoding)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def check(self) -> None:
        """Cancel and soft time limit, as the job's progress callback decides them."""
        try:
            self.on_progress(self.done_s, self.total_s)
        except Exception as exc:  # noqa: BLE001 - the callback's way of stopping the job
            self.fail(exc)

    def record(self, index: int, transcript: WindowTranscript, used: ModelKey) -> int | None:
        """Keep a window's transcript; returns the index of a follow-up window to decode
        when the window's decoding stopped short of its end (see `follow_up`)."""
        if self.finished:
            return None
        self.transcripts[index] = transcript
        self.done_s += self.windows[index].seconds
        if used != self.group.key:
            self.used = used  # an out-of-memory fallback served some of its windows
        rest = follow_up(self.windows[index], transcript)
        if rest is not None:
            self.windows.append(rest)
            self.transcripts.append(None)
            self.requests.append(self._prompted(transcript))
            self.total_s += rest.seconds
            return len(self.windows) - 1
        if all(t is not None for t in self.transcripts):
            done = [t for t in self.transcripts if t is not None]
            language = self.group.request.language or "en"
            result = assemble(self.windows, done, language=language, duration=self.duration)
            self.future.set_result((result, self.used))
        return None


@dataclass(frozen=True, slots=True)
class _Item:
    job: _Job
    index: int

    @property
    def sort_key(self) -> tuple[int, int, int, int]:
        return (self.job.rank, self.job.order + self.index, self.job.order, self.index)

    @property
    def request(self) -> TranscribeRequest:
        return self.job.requests[self.index]


class _Lane:
    def __init__(self, group: BatchGroup) -> None:
        self.group = group
        self.queue: list[_Item] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, job: _Job) -> None:
        self.queue.extend(_Item(job, index) for index in range(len(job.windows)))
        self.arrived.set()

    def drop_finished(self) -> None:
        self.queue = [item for item in self.queue if not item.job.finished]

    def jobs(self) -> list[_Job]:
        return list({id(item.job): item.job for item in self.queue}.values())

    def take(self, count: int) -> list[_Item]:
        """The next batch: the first window in order, and the next ones decoded alike."""
        self.queue.sort(key=lambda item: item.sort_key)
        if not self.queue:
            return []
        request = self.queue[0].request
        batch = [item for item in self.queue if item.request == request][:count]
        taken = {id(item) for item in batch}
        self.queue = [item for item in self.queue if id(item) not in taken]
        return batch


class WindowBatcher:
    """One per worker: a lane per `BatchGroup`, each running one model call at a time."""

    def __init__(
        self,
        pool: ModelPool,
        executor: concurrent.futures.Executor,
        *,
        batch_size: int,
        wait_s: float,
        acquire_timeout_s: float,
        cut: Cutter = _cut,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._pool = pool
        self._executor = executor
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._acquire_timeout_s = acquire_timeout_s
        self._cut = cut
        self._lanes: dict[BatchGroup, _Lane] = {}
        self._order = itertools.count()
        self._incoming = 0
        self._closed = False
        self._batches = 0
        self._windows = 0
        self._largest = 0
        self._peak_windows = 0
        self._peak_seconds = 0.0

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def queued(self) -> int:
        """Windows waiting for a batch now."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def stats(self) -> BatchStats:
        return BatchStats(
            self._batches, self._windows, self._largest, self._peak_windows, self._peak_seconds
        )

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Around a batchable job's download and decode: lanes wait for it (up to wait_s).

        Leaving wakes no lane: the job's arrival does, or else the lane's wait runs out.
        """
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def transcribe(
        self,
        group: BatchGroup,
        priority: Priority,
        samples: Samples,
        *,
        vad_filter: bool,
        on_progress: SegmentCallback,
    ) -> tuple[TranscriptResult, ModelKey]:
        """One job's transcript, its windows decoded in batches with other jobs' windows.

        Cancelling the caller (a hard time limit) takes the job's windows out of the queue.
        """
        duration = len(samples) / SAMPLE_RATE
        language = group.request.language or "en"
        with self.incoming():
            windows = await asyncio.to_thread(self._cut, samples, vad_filter)
            pending = self._enqueue(group, priority, windows, on_progress, duration)
        if pending is None:
            return TranscriptResult((), language, 1.0, duration), group.key
        return await pending

    def _enqueue(
        self,
        group: BatchGroup,
        priority: Priority,
        windows: list[Window],
        on_progress: SegmentCallback,
        duration: float,
    ) -> asyncio.Future[tuple[TranscriptResult, ModelKey]] | None:
        """Queue a job's windows in its group's lane; its transcript comes in the future."""
        if not windows:
            return None
        future: asyncio.Future[tuple[TranscriptResult, ModelKey]] = (
            asyncio.get_running_loop().create_future()
        )
        if self._closed:
            future.cancel()  # the worker is closing: unfinished, left for redelivery
            return future
        job = _Job(
            order=next(self._order),
            priority=priority,
            windows=windows,
            on_progress=on_progress,
            future=future,
            group=group,
            duration=duration,
        )
        lane = self._lanes.get(group)
        if lane is None:
            lane = self._lanes[group] = _Lane(group)
            lane.task = asyncio.ensure_future(self._serve(lane))
        lane.add(job)
        self._note_queue()
        return future

    async def close(self) -> None:
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the lanes -------------------------------------------------------------------

    async def _serve(self, lane: _Lane) -> None:
        batch: list[_Item] = []
        try:
            while True:
                lane.drop_finished()
                if not lane.queue:
                    return
                await self._gather(lane)
                for job in lane.jobs():
                    job.check()
                lane.drop_finished()
                batch = lane.take(self._batch_size)
                if batch:
                    await self._decode(lane, batch)
                    for job in {id(item.job): item.job for item in batch}.values():
                        if not job.finished:
                            job.check()  # progress, and a cancel seen at once
        except asyncio.CancelledError:
            # the worker is closing: its jobs end unfinished (uncommitted, redelivered)
            for item in [*batch, *lane.queue]:
                item.job.future.cancel()
            raise
        except Exception as exc:
            for item in lane.queue:
                item.job.fail(exc)
            raise
        finally:
            if self._lanes.get(lane.group) is lane:
                del self._lanes[lane.group]

    async def _gather(self, lane: _Lane) -> None:
        """Wait up to wait_s for a full batch, while some job's audio is still on its way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while len(lane.queue) < self._batch_size and self._incoming > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            lane.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.arrived.wait(), remaining)
            lane.drop_finished()

    async def _decode(self, lane: _Lane, batch: Sequence[_Item]) -> None:
        group = lane.group
        windows = [item.job.windows[item.index].samples for item in batch]

        def work(model: Transcriber) -> list[WindowTranscript]:
            return model.transcribe_windows(windows, batch[0].request)

        def run() -> tuple[list[WindowTranscript], ModelKey]:
            return self._pool.run(group.key, self._acquire_timeout_s, work)

        try:
            transcripts, used = await asyncio.get_running_loop().run_in_executor(
                self._executor, run
            )
        except (PoolTimeoutError, ModelOutOfMemoryError) as exc:
            self._fail(batch, exc)  # no one job's fault: every job retries
            return
        except Exception as exc:  # noqa: BLE001 - isolated below, or the job's own failure
            jobs = {id(item.job): item.job for item in batch}
            if len(jobs) == 1:
                self._fail(batch, exc)
                return
            log.warning(
                "a batch of %d windows from %d jobs failed (%s: %s); decoding job by job",
                len(batch),
                len(jobs),
                type(exc).__name__,
                exc,
            )
            for job in jobs.values():
                await self._decode(lane, [item for item in batch if item.job is job])
            return
        self._batches += 1
        self._windows += len(batch)
        self._largest = max(self._largest, len(batch))
        for item, transcript in zip(batch, transcripts, strict=True):
            more = item.job.record(item.index, transcript, used)
            if more is not None:
                lane.queue.append(_Item(item.job, more))

    @staticmethod
    def _fail(batch: Sequence[_Item], exc: BaseException) -> None:
        for item in batch:
            item.job.fail(exc)

    def _note_queue(self) -> None:
        items = [item for lane in self._lanes.values() for item in lane.queue]
        self._peak_windows = max(self._peak_windows, len(items))
        seconds = sum(item.job.windows[item.index].seconds for item in items)
        self._peak_seconds = max(self._peak_seconds, seconds)
