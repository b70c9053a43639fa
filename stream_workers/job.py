"""One delivery of one transcription request, from the audio in S3 to a terminal event.

Every path ends in exactly one terminal action, each published (and acknowledged by the
broker) before `run` returns, so the caller can commit the offset afterwards:
completed, cancelled, a retry request + `retrying`, or a DeadLetter + `failed`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from schemas.events import (
    DeadLetter,
    JobStatus,
    JobTiming,
    SourcePosition,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from storage.keys import S3Uri, result_uri
from stream_workers import audio
from stream_workers.batching import BatchGroup, WindowBatcher, batch_group
from stream_workers.config import WorkerTuning
from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    Transcriber,
    TranscribeRequest,
    TranscriptResult,
)
from stream_workers.engines.decoding import Decoding
from stream_workers.errors import JobCancelledError, TimeLimitExceededError
from stream_workers.policy import classify, retry_delay_s, stack_trace, time_limits
from stream_workers.pool import ModelPool
from stream_workers.ports import CancelView, EventPublisher, ObjectStorage
from stream_workers.prefetch import Prefetch, audio_file_name
from stream_workers.results import result_document, summary_of
from stream_workers.scheduler import SlotScheduler
from stream_workers.status import StatusEmitter
from whisperstream.logs import activity_logger, job_log_context
from whisperstream.settings import Settings

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    COMPLETED = "completed"
    ALREADY_COMPLETED = "already_completed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    request: TranscriptionRequested
    source: SourcePosition
    raw: bytes


class _Progress:
    """Runs on the engine's thread after each segment: stop checks and throttled progress."""

    def __init__(
        self,
        job_id: str,
        cancels: CancelView,
        soft_deadline: float,
        tuning: WorkerTuning,
        report: Callable[[float], None],
    ) -> None:
        self._job_id = job_id
        self._cancels = cancels
        self._soft_deadline = soft_deadline
        self._tuning = tuning
        self._report = report
        self._last_time = time.monotonic()
        self._last_fraction = 0.0
        self.stop = threading.Event()

    def __call__(self, done: float, total: float) -> None:
        if self._cancels.is_cancelled(self._job_id):
            raise JobCancelledError(f"job {self._job_id} was cancelled while running")
        now = time.monotonic()
        if self.stop.is_set():
            raise TimeLimitExceededError("hard time limit reached")
        if now > self._soft_deadline:
            raise TimeLimitExceededError("soft time limit reached")
        fraction = min(0.99, done / total) if total > 0 else 0.0
        due = now - self._last_time >= self._tuning.progress_interval_s
        if fraction > self._last_fraction and (
            due or fraction - self._last_fraction >= self._tuning.progress_step
        ):
            self._last_time, self._last_fraction = now, fraction
            self._report(fraction)


class _Phases:
    """Wall seconds per phase of one job, logged when it ends (where the time goes)."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._last = self._started
        self._spent: list[tuple[str, float]] = []

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self._spent.append((phase, now - self._last))
        self._last = now

    def summary(self) -> str:
        parts = ", ".join(f"{phase} {seconds:.3f}" for phase, seconds in self._spent)
        return f"{time.monotonic() - self._started:.3f}s ({parts})"


class JobRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        tuning: WorkerTuning,
        worker_id: str,
        pool: ModelPool,
        key_for: Callable[[str, str], ModelKey],
        store: ObjectStorage,
        publisher: EventPublisher,
        cancels: CancelView,
        executor: concurrent.futures.Executor,
        workdir: Path,
        rng: random.Random | None = None,
        batcher: WindowBatcher | None = None,
        engine_slots: SlotScheduler | None = None,
    ) -> None:
        """`batcher`: batch compatible jobs' windows together (None: every job alone).
        `engine_slots`: what a job that runs alone waits for, by priority, when the
        worker's job slots no longer bound how many use a model at once (batching on)."""
        self._settings = settings
        self._tuning = tuning
        self._worker_id = worker_id
        self._pool = pool
        self._key_for = key_for
        self._store = store
        self._publisher = publisher
        self._cancels = cancels
        self._executor = executor
        self._workdir = workdir
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._batcher = batcher
        self._engine_slots = engine_slots
        self.transcriptions = 0

    async def run(self, delivery: Delivery, prefetch: Prefetch | None = None) -> Outcome:
        """Run one delivery to its terminal event; `prefetch` is its audio fetched ahead."""
        with job_log_context(delivery.request.job_id):
            return await self._run(delivery, prefetch)

    async def _run(self, delivery: Delivery, prefetch: Prefetch | None) -> Outcome:
        request = delivery.request
        status = StatusEmitter(
            self._publisher, self._settings.topic_status, request, self._worker_id
        )
        if self._cancels.is_cancelled(request.job_id):
            await status.emit(JobStatus.CANCELLED)
            activity_logger().info("job %s cancelled", request.job_id)
            return Outcome.CANCELLED
        target = result_uri(self._settings.results_bucket, request.job_id)
        phases = _Phases()
        started = time.monotonic()
        try:
            if await asyncio.to_thread(self._store.exists, target):
                return await self._completed_again(request.job_id, status, target)
            phases.mark("result-exists")
            return await self._transcribe(delivery, status, target, phases, prefetch)
        except JobCancelledError:
            await status.emit(JobStatus.CANCELLED)
            activity_logger().info("job %s cancelled", request.job_id)
            return Outcome.CANCELLED
        except Exception as exc:  # noqa: BLE001 - every failure ends in a retry or the DLQ
            return await self._failed(delivery, status, exc, time.monotonic() - started)

    async def _completed_again(self, job_id: str, status: StatusEmitter, target: S3Uri) -> Outcome:
        document = await asyncio.to_thread(self._store.get_json, target)
        status.engine = document.get("engine")
        status.model = document.get("model")
        log.info("result of %s already exists; completing without transcribing", target)
        await status.emit(
            JobStatus.COMPLETED, progress=1.0, result=summary_of(document, str(target))
        )
        activity_logger().info(
            "job %s completed (%s %s; the result was already there)",
            job_id,
            status.engine,
            status.model,
        )
        return Outcome.ALREADY_COMPLETED

    async def _transcribe(
        self,
        delivery: Delivery,
        status: StatusEmitter,
        target: S3Uri,
        phases: _Phases,
        prefetch: Prefetch | None,
    ) -> Outcome:
        request = delivery.request
        key = self._key_for(
            request.engine or self._settings.whisper_engine,
            request.model or self._settings.whisper_model_size,
        )
        status.engine, status.model = key.engine, key.model
        started = time.monotonic()
        started_at = utc_now()
        status.emit_nowait(JobStatus.PROCESSING)
        max_seconds = self._tuning.max_audio_duration_s
        group = self._batch_group(request, key)
        # a lane waits (briefly) for a batchable job whose audio is still on its way
        incoming = (
            self._batcher.incoming()
            if self._batcher is not None and group is not None
            else contextlib.nullcontext()
        )
        with tempfile.TemporaryDirectory(dir=self._workdir, prefix="job-") as folder:
            with incoming:
                fetched = await prefetch.result() if prefetch is not None else None
                phases.mark("prefetch-wait" if fetched is not None else "start")
                workdir = Path(folder)
                decoded = fetched.decoded if fetched is not None else None
                if decoded is None:
                    if fetched is None:
                        source = S3Uri.parse(request.audio.uri)
                        path = workdir / audio_file_name(source)
                        await asyncio.to_thread(self._store.download_to, source, path)
                        phases.mark("download")
                    else:
                        path = fetched.path
                    decoded = await asyncio.to_thread(audio.prepare, path, workdir, max_seconds)
                    phases.mark("decode")
            if self._batcher is not None and group is not None:
                result, used = await self._run_batched(
                    self._batcher, request, group, decoded.samples, status
                )
            elif self._engine_slots is not None:
                async with await self._engine_slots.acquire(request.priority):
                    result, used = await self._run_engine(request, key, decoded.samples, status)
            else:
                result, used = await self._run_engine(request, key, decoded.samples, status)
            phases.mark("engine")
        duration = decoded.duration
        document = result_document(request.job_id, result, used)
        await asyncio.to_thread(self._store.put_json, target, document)
        phases.mark("result-upload")
        self.transcriptions += 1
        status.model = used.model
        elapsed = time.monotonic() - started
        timing = JobTiming(
            queued_ms=max(0, int((started_at - request.occurred_at).total_seconds() * 1000)),
            processing_ms=int(elapsed * 1000),
            real_time_factor=elapsed / duration if duration > 0 else 0.0,
        )
        await status.emit(
            JobStatus.COMPLETED,
            progress=1.0,
            result=summary_of(document, str(target)),
            timing=timing,
        )
        phases.mark("completed-event")
        log.info("job %s completed in %s", request.job_id, phases.summary())
        activity_logger().info(
            "job %s completed in %.1fs (%s %s, %.1fs of audio)",
            request.job_id,
            elapsed,
            used.engine,
            used.model,
            duration,
        )
        return Outcome.COMPLETED

    def _batch_group(self, request: TranscriptionRequested, key: ModelKey) -> BatchGroup | None:
        if self._batcher is None or self._batcher.batch_size < 2:
            return None
        return batch_group(key, request.language, request.task, Decoding.of(request.options))

    def _progress(
        self, request: TranscriptionRequested, status: StatusEmitter, soft_s: float
    ) -> tuple[_Progress, Callable[[], None]]:
        """The job's progress callback, and what to call once its engine phase has ended."""
        loop = asyncio.get_running_loop()
        engine_done = False

        def report_on_loop(fraction: float) -> None:
            # A thread past its hard limit may still report: nothing after the engine phase
            # ended may be sent, or it could follow the job's terminal event.
            if not engine_done:
                status.emit_nowait(JobStatus.PROCESSING, progress=fraction)

        def report(fraction: float) -> None:  # on the engine's thread, or the loop's
            loop.call_soon_threadsafe(report_on_loop, fraction)

        def ended() -> None:
            nonlocal engine_done
            engine_done = True

        progress = _Progress(
            request.job_id, self._cancels, time.monotonic() + soft_s, self._tuning, report
        )
        return progress, ended

    async def _run_batched(
        self,
        batcher: WindowBatcher,
        request: TranscriptionRequested,
        group: BatchGroup,
        samples: Samples,
        status: StatusEmitter,
    ) -> tuple[TranscriptResult, ModelKey]:
        duration = len(samples) / SAMPLE_RATE
        limits = time_limits(duration, self._tuning)
        progress, ended = self._progress(request, status, limits.soft_s)
        try:
            return await asyncio.wait_for(
                batcher.transcribe(
                    group,
                    request.priority,
                    samples,
                    vad_filter=request.options.vad_filter,
                    on_progress=progress,
                ),
                limits.hard_s,
            )
        except TimeoutError:
            # the job's windows left the queue; a batch already running ends without it
            raise TimeLimitExceededError(
                f"hard time limit of {limits.hard_s:.0f}s reached for {duration:.0f}s of audio"
            ) from None
        finally:
            ended()

    async def _run_engine(
        self,
        request: TranscriptionRequested,
        key: ModelKey,
        samples: Samples,
        status: StatusEmitter,
    ) -> tuple[TranscriptResult, ModelKey]:
        loop = asyncio.get_running_loop()
        duration = len(samples) / SAMPLE_RATE
        limits = time_limits(duration, self._tuning)
        progress, ended = self._progress(request, status, limits.soft_s)
        engine_request = TranscribeRequest(
            request.language, request.task, Decoding.of(request.options)
        )

        def work(model: Transcriber) -> TranscriptResult:
            return model.transcribe(samples, engine_request, progress)

        def run() -> tuple[TranscriptResult, ModelKey]:
            return self._pool.run(key, self._tuning.model_acquire_timeout_s, work)

        running = loop.run_in_executor(self._executor, run)
        try:
            return await asyncio.wait_for(asyncio.shield(running), limits.hard_s)
        except TimeoutError:
            # A thread cannot be killed: flag it to stop at its next segment; the pool keeps
            # its model leased until it does, so nothing else can use a model still in use.
            progress.stop.set()
            raise TimeLimitExceededError(
                f"hard time limit of {limits.hard_s:.0f}s reached for {duration:.0f}s of audio"
            ) from None
        finally:
            ended()

    async def _failed(
        self, delivery: Delivery, status: StatusEmitter, exc: Exception, elapsed: float
    ) -> Outcome:
        request = delivery.request
        error = classify(exc)
        if error.retryable and request.attempt < self._tuning.max_attempts:
            delay = retry_delay_s(request.attempt, self._tuning, self._rng)
            now = utc_now()
            retry = dataclasses.replace(
                request,
                event_id=new_event_id(),
                occurred_at=now,
                attempt=request.attempt + 1,
                not_before=now + timedelta(seconds=delay),
            )
            log.warning(
                "job %s attempt %d failed (%s: %s); retry in %.1fs",
                request.job_id,
                request.attempt,
                error.type,
                error.message,
                delay,
            )
            await self._publisher.publish(
                self._settings.topic_requests_retry, request.job_id, retry
            )
            await status.emit(JobStatus.RETRYING, error=error)
            return Outcome.RETRYING
        log.error(
            "job %s failed for good on attempt %d (%s: %s)",
            request.job_id,
            request.attempt,
            error.type,
            error.message,
        )
        dead = DeadLetter(
            event_id=new_event_id(),
            job_id=request.job_id,
            occurred_at=utc_now(),
            error_type=error.type,
            error_message=error.message,
            stack_trace=stack_trace(exc),
            retry_count=request.attempt - 1,
            source=delivery.source,
            original_value=delivery.raw,
            request=request,
        )
        await self._publisher.publish(self._settings.topic_dlq, request.job_id, dead)
        await status.emit(JobStatus.FAILED, error=error)
        activity_logger().info(
            "job %s failed after %.1fs (%s %s): %s: %s",
            request.job_id,
            elapsed,
            status.engine or request.engine or self._settings.whisper_engine,
            status.model or request.model or self._settings.whisper_model_size,
            error.type,
            error.message,
        )
        return Outcome.FAILED
