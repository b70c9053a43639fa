"""Turning an accepted upload into a published job, and cancelling one.

The order is the contract: audio in S3, then the event confirmed by Kafka, then the
202.  Postgres is only updated afterwards (read-your-writes); Kafka stays the truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.api_support import apply_now, find_idempotent_job, insert_new_job
from db.fold import JobEvent
from notifier.addresses import url_refusal
from producer_api.auth import Principal
from producer_api.metrics import ApiMetrics
from producer_api.options import SubmitOptions
from producer_api.problems import ProblemError, validation_error
from schemas.codec import EventCodec
from schemas.events import (
    AudioRef,
    CancelRequested,
    Event,
    Priority,
    Source,
    TranscriptionOptions,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from whisperstream.kafka_producer import KafkaProducer, PublishError
from whisperstream.logs import activity_logger
from whisperstream.settings import Settings

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def kafka_unavailable(exc: PublishError) -> ProblemError:
    return ProblemError(
        503,
        "Service Unavailable",
        f"the job could not be queued, nothing was created: {exc}",
        slug="kafka-unavailable",
        headers={"Retry-After": "5"},
    )


def database_unavailable(what: str) -> ProblemError:
    return ProblemError(
        503,
        "Service Unavailable",
        f"the database is unavailable: {what}",
        slug="database-unavailable",
        headers={"Retry-After": "5"},
    )


@dataclass
class Publisher:
    settings: Settings
    producer: KafkaProducer
    codec: EventCodec
    engine: AsyncEngine
    metrics: ApiMetrics

    async def publish(self, topic: str, job_id: str, event: Event) -> tuple[int, int]:
        started = time.perf_counter()
        outcome = "error"
        try:
            position = await self.producer.send(topic, job_id, self.codec.encode(event))
            outcome = "ok"
            return position
        finally:
            self.metrics.produce_latency.labels(topic, outcome).observe(
                time.perf_counter() - started
            )

    async def reflect(self, event: JobEvent) -> None:
        """Read-your-writes: fold the published event into Postgres now, if it is up."""
        try:
            if isinstance(event, TranscriptionRequested) and event.idempotency_key is None:
                await insert_new_job(self.engine, event)
            else:
                await apply_now(self.engine, [event])
        except (SQLAlchemyError, OSError) as exc:
            log.warning("job %s is in Kafka but not yet in Postgres: %s", event.job_id, exc)

    async def request(
        self,
        principal: Principal,
        job_id: str,
        audio: AudioRef,
        options: SubmitOptions,
        idempotency_key: str | None,
    ) -> None:
        if options.callback_url is not None:
            # SSRF: refused now if its host resolves to a private address; the notifier
            # checks again at each delivery, since DNS can change
            refusal = await url_refusal(
                options.callback_url,
                allow_private=self.settings.webhook_allow_private_networks,
            )
            if refusal is not None:
                raise validation_error("callback_url", f"refused: {refusal}")
        event = TranscriptionRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            priority=options.priority,
            attempt=1,
            not_before=None,
            audio=audio,
            model=options.model,
            engine=options.engine,
            language=options.language,
            task=options.task,
            options=TranscriptionOptions(
                initial_prompt=options.initial_prompt,
                word_timestamps=options.word_timestamps,
                temperature=options.temperature,
                beam_size=options.beam_size,
                vad_filter=options.vad_filter,
            ),
            owner=principal.owner,
            idempotency_key=idempotency_key,
            callback_url=options.callback_url,
            source=Source.API,
            correlation_id=None,
        )
        topic = (
            self.settings.topic_requests_high
            if options.priority is Priority.HIGH
            else self.settings.topic_requests_normal
        )
        await self.publish(topic, job_id, event)
        await self.reflect(event)
        activity_logger().info(
            "job %s accepted (%s %s, %s priority)",
            job_id,
            event.engine or self.settings.whisper_engine,
            event.model or self.settings.whisper_model_size,
            event.priority.value,
            extra={"job_id": job_id},
        )

    async def cancel(self, principal: Principal, job_id: str) -> None:
        event = CancelRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            requested_by=principal.owner,
            reason="requested through the API",
        )
        await self.publish(self.settings.topic_control, job_id, event)
        await self.reflect(event)


class IdempotencyGuard:
    """Serialises submissions that share (owner, key) within this process and finds the
    job an earlier one created.  Across processes the projector settles a race."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, owner: str, key: str) -> asyncio.Lock:
        return self._locks.setdefault((owner, key), asyncio.Lock())

    def release(self, owner: str, key: str) -> None:
        lock = self._locks.get((owner, key))
        if lock is not None and not lock.locked():
            del self._locks[(owner, key)]

    async def existing(self, owner: str, key: str) -> uuid.UUID | None:
        try:
            return await find_idempotent_job(
                self._engine,
                owner=owner,
                idempotency_key=key,
                created_after=utc_now() - IDEMPOTENCY_WINDOW,
            )
        except (SQLAlchemyError, OSError) as exc:
            raise database_unavailable("the Idempotency-Key cannot be checked") from exc
