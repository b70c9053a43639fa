"""The worker's composition root: every component of one worker process, and how a
request message becomes a job. The Faust layer only feeds messages in."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import SourcePosition, TranscriptionRequested, WorkerHeartbeat, utc_now
from storage.errors import InvalidS3UriError
from storage.keys import S3Uri
from storage.s3 import ObjectStore
from stream_workers.batching import WindowBatcher
from stream_workers.config import WorkerTuning, default_cpu_threads
from stream_workers.dead_letters import undecodable_dead_letter
from stream_workers.engines.loader import EngineLoader
from stream_workers.errors import WorkerStoppingError
from stream_workers.job import Delivery, JobRunner, Outcome
from stream_workers.kafka_io import (
    CancelRegistry,
    ControlReader,
    KafkaPublisher,
    KafkaUnavailableError,
)
from stream_workers.models.catalog import ModelCatalog
from stream_workers.ordered_acks import Ack, OrderedAcks
from stream_workers.pool import ModelPool
from stream_workers.prefetch import Prefetch, Prefetcher
from stream_workers.scheduler import SlotScheduler
from whisperstream.heartbeat_file import HeartbeatFile
from whisperstream.kafka_security import KafkaConnection
from whisperstream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Counts:
    processed: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerService:
    def __init__(self, settings: Settings, tuning: WorkerTuning) -> None:
        self.settings = settings
        self.tuning = tuning
        self.worker_id = tuning.worker_id or default_worker_id()
        self.fatal = asyncio.Event()
        self._counts = _Counts()
        self._jobs: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._waiting_retries: set[asyncio.Task[None]] = set()
        self._acks = OrderedAcks()
        self._delayed = asyncio.Semaphore(tuning.max_delayed_retries)
        self._closers: list[Callable[[], Awaitable[None] | None]] = []
        self.batcher: WindowBatcher | None = None

    # -- lifetime --------------------------------------------------------------------

    async def start(self) -> None:
        settings, tuning = self.settings, self.tuning
        self.codec = EventCodec()
        self._closers.append(self.codec.close)
        self.publisher = KafkaPublisher(
            KafkaConnection.from_settings(settings), self.codec, client_id=self.worker_id
        )
        await self.publisher.start()
        self._closers.append(self.publisher.close)
        self.cancels = CancelRegistry()
        self.control = ControlReader(
            KafkaConnection.from_settings(settings),
            settings.topic_control,
            codec=self.codec,
            registry=self.cancels,
            publisher=self.publisher,
            dlq_topic=settings.topic_dlq,
        )
        self._closers.append(self.control.close)
        await asyncio.to_thread(self.control.start)
        # Read the cancels already in the topic before taking any job.
        await asyncio.to_thread(self.control.caught_up.wait, 30)
        self.store = ObjectStore.from_settings(settings)
        self._closers.append(self.store.close)
        cache = tuning.whisper_cache_dir or settings.whisperstream_state_dir / "models"
        catalog = ModelCatalog(settings.whisper_model_dir, cache)
        cpu_threads = tuning.whisper_cpu_threads or default_cpu_threads(settings.worker_concurrency)
        fault_oom = tuning.fault_oom_models
        if fault_oom:
            log.warning(
                "fault injection on: loading %s fails with MemoryError (WORKER_FAULT_OOM_MODELS)",
                ", ".join(sorted(fault_oom)),
            )
        self.loader = EngineLoader(
            catalog,
            device=tuning.whisper_device,
            cpu_threads=cpu_threads,
            batch_size=tuning.whisper_batch_size,
            fault_oom_models=fault_oom,
            process_engines=tuning.process_engines,
        )
        self.pool = ModelPool(
            self.loader,
            max_size=settings.model_pool_max_size,
            max_memory_mb=settings.model_pool_max_memory_mb,
        )
        self._closers.append(self.pool.close)
        # Every model load and transcription runs on these threads. PyTorch's OpenMP runtime
        # keeps a thread team for each thread that ever ran a parallel region; once the
        # teams hold more threads than there are CPUs it stops spin-waiting between regions,
        # and openai-whisper's many small decoder ops got about 40 % slower. One spare
        # thread serves a new job while a job past its hard time limit still holds one.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            settings.worker_concurrency + 1, thread_name_prefix="transcribe"
        )
        self._closers.append(lambda: self.executor.shutdown(wait=False, cancel_futures=True))
        self.workdir = Path(tempfile.mkdtemp(prefix="whisperstream-worker-"))
        self._closers.append(lambda: shutil.rmtree(self.workdir, ignore_errors=True))
        default_key = self.loader.key_for(settings.whisper_engine, settings.whisper_model_size)
        if settings.model_pool_size:
            # On the transcription threads, like every other model load (see above).
            await asyncio.get_running_loop().run_in_executor(
                self.executor,
                self.pool.warm,
                default_key,
                settings.model_pool_size,
                tuning.model_acquire_timeout_s,
            )
        engine_slots = None
        job_slots = settings.worker_concurrency
        if tuning.batching:
            # Jobs whose windows batch together must be in progress together: the job slots
            # grow to BATCH_MAX_JOBS, and a job that runs alone waits for one of the
            # WORKER_CONCURRENCY engine slots instead (by priority, as before).
            self.batcher = WindowBatcher(
                self.pool,
                self.executor,
                batch_size=tuning.whisper_batch_size,
                wait_s=tuning.batch_wait_ms / 1000,
                acquire_timeout_s=tuning.model_acquire_timeout_s,
            )
            self._closers.append(self.batcher.close)
            engine_slots = SlotScheduler(settings.worker_concurrency)
            job_slots = max(job_slots, tuning.job_slots_when_batching)
        self.scheduler = SlotScheduler(job_slots)
        prefetch_jobs = tuning.prefetch_jobs
        self.prefetcher = Prefetcher(
            self.store,
            self.workdir,
            limit=settings.worker_concurrency if prefetch_jobs is None else prefetch_jobs,
            decode_max_s=tuning.prefetch_decode_max_s,
        )
        self.runner = JobRunner(
            settings=settings,
            tuning=tuning,
            worker_id=self.worker_id,
            pool=self.pool,
            key_for=self.loader.key_for,
            store=self.store,
            publisher=self.publisher,
            cancels=self.cancels,
            executor=self.executor,
            workdir=self.workdir,
            batcher=self.batcher,
            engine_slots=engine_slots,
        )
        self._spawn_background(self._heartbeats())
        log.info(
            "worker %s ready: %d slot(s), %d CPU thread(s) per model, batches of %d, pool %s",
            self.worker_id,
            job_slots,
            cpu_threads,
            tuning.whisper_batch_size,
            self.pool.loaded(),
        )

    async def drain(self) -> bool:
        """Take no new jobs; give running ones the grace period. True when all finished."""
        self.scheduler.close()
        for waiting in self._waiting_retries:
            waiting.cancel()  # retries not yet due stay unacked, for redelivery
        try:
            async with asyncio.timeout(self.tuning.shutdown_grace_s):
                await self.scheduler.wait_idle()
                while self._jobs:
                    await asyncio.wait(set(self._jobs))
        except TimeoutError:
            log.warning(
                "%d job(s) still running after the %.0fs grace period: left uncommitted for "
                "redelivery",
                len(self._jobs),
                self.tuning.shutdown_grace_s,
            )
            return False
        return True

    async def close(self) -> None:
        if self.batcher is not None:
            stats = self.batcher.stats()
            log.info(
                "batching: %d model calls, %d windows, largest %d; at most %d windows "
                "(%.0f s of audio) queued at once",
                stats.batches,
                stats.windows,
                stats.largest_batch,
                stats.peak_queued_windows,
                stats.peak_queued_seconds,
            )
        tasks = [*self._jobs, *self._background, *self._waiting_retries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for closer in reversed(self._closers):
            closed = closer()
            if inspect.isawaitable(closed):
                await closed

    # -- messages --------------------------------------------------------------------

    async def admit(
        self, raw: bytes | None, key: bytes | None, position: SourcePosition, ack: Ack
    ) -> None:
        """Decode, wait for a slot by priority, and start the job; returns once it started.

        A retry not yet due waits in the background (it does not hold up the topic), and
        an undecodable value goes to the DLQ. `ack` runs only after the job's terminal
        event was delivered, and after every earlier message of its partition was acked.
        """
        ack = self._acks.admitted(position, ack)
        raw = raw or b""
        try:
            request = self.codec.decode(raw, TranscriptionRequested)
        except UndecodableEvent as exc:
            await self._dead_letter_undecodable(raw, key, position, exc)
            await ack()
            return
        delivery = Delivery(request, position, raw)
        due = request.not_before
        if due is not None and due > utc_now():
            await self._delayed.acquire()
            task = asyncio.ensure_future(
                self._later(delivery, (due - utc_now()).total_seconds(), ack)
            )
            self._waiting_retries.add(task)
            task.add_done_callback(self._waiting_retries.discard)
            return
        await self._start(delivery, ack)

    async def _later(self, delivery: Delivery, delay: float, ack: Ack) -> None:
        try:
            await asyncio.sleep(max(0.0, delay))
        finally:
            self._delayed.release()
        try:
            await self._start(delivery, ack)
        except WorkerStoppingError:
            return  # stopping: left unacked, so another worker gets it

    async def _start(self, delivery: Delivery, ack: Ack) -> None:
        priority = delivery.request.priority
        prefetch = None
        if self.scheduler.must_wait():
            prefetch = self._prefetch(delivery)
        try:
            slot = await self.scheduler.acquire(priority)
        except BaseException:
            if prefetch is not None:
                prefetch.close()
            raise
        if prefetch is not None:
            prefetch.started()
        self._spawn_job(self._job(delivery, ack, slot.release, prefetch))

    def _prefetch(self, delivery: Delivery) -> Prefetch | None:
        """Fetch a waiting job's audio while the running jobs transcribe (I/O under compute)."""
        request = delivery.request
        if self.cancels.is_cancelled(request.job_id):
            return None
        try:
            uri = S3Uri.parse(request.audio.uri)
        except InvalidS3UriError:
            return None  # the job itself reports the bad URI when it starts
        return self.prefetcher.start(uri, self.tuning.max_audio_duration_s)

    async def _job(
        self,
        delivery: Delivery,
        ack: Ack,
        release: Callable[[], None],
        prefetch: Prefetch | None,
    ) -> None:
        try:
            outcome = await self.runner.run(delivery, prefetch)
        except Exception:
            # The terminal event could not be delivered (the broker is gone): leave the
            # offset uncommitted and stop the worker so the job is redelivered.
            log.exception("job %s: terminal event not delivered", delivery.request.job_id)
            self.fatal.set()
            raise
        finally:
            release()
            if prefetch is not None:
                prefetch.close()
        self._count(outcome)
        await ack()

    def _count(self, outcome: Outcome) -> None:
        if outcome in (Outcome.COMPLETED, Outcome.ALREADY_COMPLETED):
            self._counts.processed += 1
        elif outcome == Outcome.FAILED:
            self._counts.failed += 1
        self._counts.outcomes[outcome.value] = self._counts.outcomes.get(outcome.value, 0) + 1

    async def _dead_letter_undecodable(
        self, raw: bytes, key: bytes | None, position: SourcePosition, exc: UndecodableEvent
    ) -> None:
        log.error("undecodable message at %s: %s; sent to the DLQ", position, exc)
        dead = undecodable_dead_letter(position, raw, key, exc, names_job=True)
        await self.publisher.publish(self.settings.topic_dlq, dead.key, dead.event)

    def _spawn_job(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _spawn_background(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- heartbeats ------------------------------------------------------------------

    def heartbeat(self) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            occurred_at=utc_now(),
            engines=list(self.loader.engines()),
            loaded_models=self.pool.loaded(),
            pool=self.pool.stats(),
            in_flight=self.scheduler.in_use,
            # jobs it takes at once: more than WORKER_CONCURRENCY while batching
            concurrency=self.scheduler.slots,
            processed=self._counts.processed,
            failed=self._counts.failed,
        )

    async def _heartbeats(self) -> None:
        heartbeat_file = HeartbeatFile(self.settings.whisperstream_heartbeat_file)
        while True:
            try:
                await self.publisher.publish(
                    self.settings.topic_workers, self.worker_id, self.heartbeat()
                )
                heartbeat_file.beat()
            except KafkaUnavailableError as exc:
                # a missed heartbeat is only a gap in /admin/health; the next one may get through
                log.warning("heartbeat not delivered: %s", exc)
            await asyncio.sleep(self.tuning.heartbeat_interval_s)

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(self._counts.outcomes)
