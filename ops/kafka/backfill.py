"""Produce `TranscriptionRequested` events straight to Kafka, as an upstream system would.

Re-running a manifest creates no duplicate jobs: each row's job id (and its event id)
is derived from what identifies the row (an explicit job id or idempotency key, else
the S3 URI, else the local file's content), and rows whose job Postgres already knows
are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.job_queries import get_job
from ops.kafka.manifest import ManifestError, ManifestRow
from schemas.codec import EventCodec
from schemas.events import (
    AudioRef,
    Priority,
    Source,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    utc_now,
)
from storage.keys import S3Uri, audio_uri
from storage.s3 import ObjectStore
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.settings import Settings

# Fixed namespace for backfill job ids: the same row gives the same id on every run.
BACKFILL_NAMESPACE = uuid.UUID("5b0f3c38-7a47-4b52-9a51-0c1bb0e0a5d1")


@dataclass(frozen=True)
class PlannedJob:
    line: int
    row: ManifestRow
    job_id: str
    local_path: Path | None
    sha256: str | None


@dataclass
class BackfillReport:
    published: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    would_publish: list[str] = field(default_factory=list)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def plan_job(line: int, row: ManifestRow, base_dir: Path) -> PlannedJob:
    local: Path | None = None
    sha256: str | None = None
    if row.is_s3:
        S3Uri.parse(row.audio)  # a clear error for a malformed URI, before anything is sent
        identity = row.audio
    else:
        local = (base_dir / row.audio).resolve()
        if not local.is_file():
            raise ManifestError(f"line {line}: audio file not found: {local}")
        sha256 = _sha256_of(local)
        identity = f"sha256:{sha256}"
    if row.job_id is not None:
        try:
            job_id = str(uuid.UUID(row.job_id))
        except ValueError as exc:
            raise ManifestError(f"line {line}: job_id: not a UUID: {row.job_id!r}") from exc
    else:
        seed = row.idempotency_key or identity
        job_id = str(uuid.uuid5(BACKFILL_NAMESPACE, f"{row.owner or ''}\n{seed}"))
    return PlannedJob(line, row, job_id, local, sha256)


def build_request(job: PlannedJob, audio: AudioRef, settings: Settings) -> TranscriptionRequested:
    row = job.row
    return TranscriptionRequested(
        # derived, so a re-run's duplicate is recognisably the same event
        event_id=str(uuid.uuid5(BACKFILL_NAMESPACE, f"request:{job.job_id}:1")),
        job_id=job.job_id,
        occurred_at=utc_now(),
        priority=Priority(row.priority or "normal"),
        attempt=1,
        not_before=None,
        audio=audio,
        model=row.model or settings.whisper_model_size,
        engine=row.engine,
        language=row.language,
        task=Task(row.task or "transcribe"),
        options=TranscriptionOptions(
            initial_prompt=row.initial_prompt,
            word_timestamps=bool(row.word_timestamps),
            temperature=row.temperature if row.temperature is not None else 0.0,
            beam_size=row.beam_size,
            vad_filter=bool(row.vad_filter),
        ),
        owner=row.owner,
        idempotency_key=row.idempotency_key,
        callback_url=None,
        source=Source.BACKFILL,
        correlation_id=None,
    )


def _audio_ref(job: PlannedJob, store: ObjectStore, settings: Settings) -> AudioRef:
    if job.local_path is not None:
        path = job.local_path
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        target = audio_uri(settings.audio_bucket, job.job_id, path.name)
        store.put_file(target, path, content_type)
        return AudioRef(
            uri=str(target),
            size_bytes=path.stat().st_size,
            sha256=job.sha256 or _sha256_of(path),
            content_type=content_type,
            original_filename=path.name,
        )
    source = S3Uri.parse(job.row.audio)
    info = store.stat(source)
    with tempfile.TemporaryDirectory(prefix="whisperstream-backfill-") as tmp:
        sha256 = _sha256_of(store.download_to(source, Path(tmp) / "audio"))
    return AudioRef(
        uri=str(source),
        size_bytes=info.size,
        sha256=sha256,
        content_type=info.content_type or "application/octet-stream",
        original_filename=source.key.rsplit("/", 1)[-1],
    )


class RateLimiter:
    """At most `per_second` calls a second, spread evenly."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = max(self._next, time.monotonic()) + self._interval


async def backfill(
    settings: Settings,
    jobs: list[PlannedJob],
    *,
    dry_run: bool,
    rate: float | None,
    on_row: Callable[[PlannedJob, str], None] = lambda _job, _outcome: None,
) -> BackfillReport:
    report = BackfillReport()
    engine = create_engine(settings.effective_database_url)
    try:
        if dry_run:
            for job in jobs:
                exists = await _known(engine, job.job_id)
                (report.skipped_existing if exists else report.would_publish).append(job.job_id)
                on_row(job, "exists" if exists else "would publish")
            return report
        limiter = RateLimiter(rate)
        async with KafkaProducer.from_settings(settings) as producer:
            with ObjectStore.from_settings(settings) as store, EventCodec() as codec:
                for job in jobs:
                    if await _known(engine, job.job_id):
                        report.skipped_existing.append(job.job_id)
                        on_row(job, "exists")
                        continue
                    await limiter.wait()
                    audio = await asyncio.to_thread(_audio_ref, job, store, settings)
                    event = build_request(job, audio, settings)
                    topic = settings.topic_for_priority(event.priority)
                    await producer.send(topic, job.job_id, codec.encode(event))
                    report.published.append(job.job_id)
                    on_row(job, "published")
    finally:
        await engine.dispose()
    return report


async def _known(engine: AsyncEngine, job_id: str) -> bool:
    return await get_job(engine, uuid.UUID(job_id), owner=None) is not None
