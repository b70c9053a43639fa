"""The notifier: the status consumer and the dispatcher, side by side in one loop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.consumer import ConsumerConfig, ConsumerStats, StatusConsumer
from notifier.dispatcher import DispatchConfig, Dispatcher
from notifier.metrics import NotifierMetrics
from notifier.sender import Sender
from schemas.codec import EventCodec
from whisperstream.kafka_security import librdkafka_security
from whisperstream.logs import activity_logger
from whisperstream.settings import Settings


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    consumer: ConsumerConfig
    dispatch: DispatchConfig
    allow_private: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifierConfig:
        secret = settings.webhook_secret
        return cls(
            consumer=ConsumerConfig(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                security=librdkafka_security(settings),
                group_id=settings.notifier_group_id,
                topic=settings.topic_status,
                api_base_url=settings.api_base_url,
            ),
            dispatch=DispatchConfig(
                concurrency=settings.webhook_concurrency,
                per_host=settings.webhook_concurrency_per_host,
                timeout_s=settings.webhook_timeout_s,
                schedule=settings.webhook_retry_delays_s,
                poll_interval_s=settings.webhook_poll_interval_s,
                fallback_secret=secret.get_secret_value() if secret else None,
            ),
            allow_private=settings.webhook_allow_private_networks,
        )


class Notifier:
    def __init__(
        self,
        config: NotifierConfig,
        engine: AsyncEngine,
        codec: EventCodec,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.config = config
        self._engine = engine
        self._codec = codec
        self._metrics = metrics
        self._stop = asyncio.Event()
        self.consumer: StatusConsumer | None = None
        self.dispatcher: Dispatcher | None = None

    def stop(self) -> None:
        self._stop.set()
        if self.consumer is not None:
            self.consumer.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()

    async def run(self) -> ConsumerStats:
        """Consume and deliver until :meth:`stop`; either part failing stops both."""
        dispatch = self.config.dispatch
        async with Sender(
            timeout_s=dispatch.timeout_s,
            allow_private=self.config.allow_private,
            connections=dispatch.concurrency,
        ) as sender:
            self.dispatcher = Dispatcher(dispatch, self._engine, sender, self._metrics)
            self.consumer = StatusConsumer(
                self.config.consumer,
                self._engine,
                self._codec,
                self.dispatcher.wake,
                self._metrics,
            )
            if self._stop.is_set():
                self.stop()
            tasks = [
                asyncio.create_task(self.consumer.run()),
                asyncio.create_task(self.dispatcher.run()),
                asyncio.create_task(self._announce_ready()),
            ]
            try:
                done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a failure propagates
                self.stop()
                await asyncio.gather(*tasks[:2])
            finally:
                self.stop()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        return self.consumer.stats

    async def _announce_ready(self) -> None:
        if self.consumer is None:
            return
        await self.consumer.stats.ready.wait()
        activity_logger().info(
            "ready: webhooks from %s, %d deliveries at once",
            self.config.consumer.topic,
            self.config.dispatch.concurrency,
        )
