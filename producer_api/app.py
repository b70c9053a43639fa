"""The API's composition root: `create_app(settings) -> web.Application`.

Every client (Postgres engine, object store, Kafka producer, codec, heartbeat monitor)
is created in a cleanup context when the app starts and closed when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from db.engine import create_engine
from db.job_owners import job_owners
from producer_api import (
    routes_admin,
    routes_docs,
    routes_events,
    routes_health,
    routes_jobs,
    routes_media,
    routes_openai,
    routes_transcribe,
    routes_web,
    routes_webhooks,
)
from producer_api.appkeys import (
    AUTH_FAILURE_LIMITER_KEY,
    CODEC_KEY,
    ENGINE_KEY,
    HEARTBEATS_KEY,
    LIMITER_KEY,
    METRICS_KEY,
    OPERATIONS_KEY,
    PRODUCER_KEY,
    SETTINGS_KEY,
    STORE_KEY,
)
from producer_api.auth import Authenticator, database_lookup
from producer_api.body_deadline import BODY_DEADLINE_KEY, BodyDeadline, body_deadline_middleware
from producer_api.heartbeats import HeartbeatMonitor
from producer_api.metrics import ApiMetrics
from producer_api.middlewares import (
    AUTHENTICATOR_KEY,
    auth_middleware,
    metrics_middleware,
    problem_middleware,
)
from producer_api.openapi import OperationTable
from producer_api.ratelimit import RateLimiter
from producer_api.routes_events import FEED_KEY
from producer_api.routes_media import AUDIO_SIGNER_KEY, audio_signer
from producer_api.routes_openai import MODELS_KEY, InstalledModels, openai_error_middleware
from producer_api.routes_transcribe import IDEMPOTENCY_KEY, PUBLISHER_KEY
from producer_api.status_feed import StatusFeed
from producer_api.submission import IdempotencyGuard, Publisher
from schemas.codec import EventCodec
from storage.s3 import ObjectStore
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.kafka_security import KafkaConnection
from whisperstream.settings import Settings

__all__ = ["SETTINGS_KEY", "build_operations", "create_app"]


def build_operations() -> OperationTable:
    table = OperationTable()
    modules = (
        routes_health,
        routes_docs,
        routes_transcribe,
        routes_media,
        routes_webhooks,
        routes_events,
        routes_jobs,
        routes_admin,
        routes_openai,
        routes_web,
    )
    for module in modules:
        table.add(*module.operations())
    return table


def _install_limits(app: web.Application, settings: Settings) -> None:
    app[LIMITER_KEY] = RateLimiter(settings.api_rate_limit_per_s, settings.api_rate_limit_burst)
    app[AUTH_FAILURE_LIMITER_KEY] = RateLimiter(
        settings.api_auth_failures_per_min / 60, settings.api_auth_failure_burst
    )
    app[BODY_DEADLINE_KEY] = BodyDeadline(
        settings.api_body_timeout_s, settings.api_body_min_rate_bytes_s
    )


def create_app(
    settings: Settings, *, producer_options: dict[str, Any] | None = None
) -> web.Application:
    """``producer_options`` are passed to :class:`KafkaProducer` (tests shorten timeouts)."""
    app = web.Application(
        client_max_size=1024**2,
        # openai_error_middleware gives /v1 errors (authentication's too) OpenAI's body
        middlewares=[
            metrics_middleware,
            problem_middleware,
            openai_error_middleware,
            auth_middleware,
            body_deadline_middleware,
        ],
    )
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = ApiMetrics()
    _install_limits(app, settings)
    operations = build_operations()
    app[OPERATIONS_KEY] = operations
    app[MODELS_KEY] = InstalledModels(settings)
    operations.register(app.router)

    async def clients(app: web.Application) -> AsyncIterator[None]:
        codec = EventCodec(settings.schema_registry_url)
        # No pre-ping: it doubles the round trips of every read. A connection that died
        # with Postgres fails one request (503) and the pool is invalidated.
        engine = create_engine(
            settings.effective_database_url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=False,
            pool_recycle=300,
        )
        store = ObjectStore.from_settings(settings)
        signer = audio_signer(settings, store)
        options: dict[str, Any] = {"delivery_timeout_s": settings.api_kafka_delivery_timeout_s}
        options.update(producer_options or {})
        producer = KafkaProducer.from_settings(settings, client_id="whisperstream-api", **options)
        heartbeats = HeartbeatMonitor(
            KafkaConnection.from_settings(settings), settings.topic_workers, codec
        )
        feed = StatusFeed(
            KafkaConnection.from_settings(settings),
            settings.topic_status,
            codec,
            lambda job_ids: job_owners(engine, job_ids),
            client_queue=settings.api_events_client_queue,
            replay_events=settings.api_events_replay_events,
        )
        admin_key = settings.whisperstream_admin_key
        app[CODEC_KEY] = codec
        app[ENGINE_KEY] = engine
        app[STORE_KEY] = store
        app[AUDIO_SIGNER_KEY] = signer
        app[PRODUCER_KEY] = producer
        app[HEARTBEATS_KEY] = heartbeats
        app[FEED_KEY] = feed
        app[AUTHENTICATOR_KEY] = Authenticator(
            database_lookup(engine), admin_key.get_secret_value() if admin_key else None
        )
        app[PUBLISHER_KEY] = Publisher(settings, producer, codec, engine, app[METRICS_KEY])
        app[IDEMPOTENCY_KEY] = IdempotencyGuard(engine)
        try:
            await producer.start()
            heartbeats.start()
            feed.start()
            yield
        finally:
            await feed.stop()
            heartbeats.stop()
            await producer.close(flush_timeout_s=5.0)
            store.close()
            signer.close()
            await engine.dispose()
            codec.close()

    async def end_streams(app: web.Application) -> None:
        # Open event streams would hold the shutdown for its whole timeout.
        if FEED_KEY in app:
            app[FEED_KEY].end_all("the API is shutting down")

    app.cleanup_ctx.append(clients)
    app.on_shutdown.append(end_streams)
    return app
