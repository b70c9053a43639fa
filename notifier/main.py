"""Composition root of the notifier process (``whisperstream notifier``)."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry

from db.engine import create_engine
from notifier.metrics import NotifierMetrics
from notifier.service import Notifier, NotifierConfig
from schemas.codec import EventCodec
from whisperstream.metrics_server import metrics_server
from whisperstream.settings import Settings

log = logging.getLogger(__name__)


def run_notifier(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; deliveries in flight are finished and recorded."""
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    config = NotifierConfig.from_settings(settings)
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    engine = create_engine(
        settings.effective_database_url, pool_size=5, max_overflow=config.dispatch.concurrency
    )
    loop = asyncio.get_running_loop()
    codec = EventCodec(settings.schema_registry_url)
    notifier = Notifier(config, engine, codec, metrics)
    try:
        with (
            codec,
            metrics_server("notifier", registry, settings.api_host, settings.notifier_metrics_port),
        ):
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, notifier.stop)
            log.info("notifier %s over %s", config.consumer.group_id, config.consumer.topic)
            stats = await notifier.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await engine.dispose()
    log.info(
        "notifier stopped: %d terminal events, %d deliveries scheduled",
        stats.terminal_events,
        stats.scheduled,
    )
    return 0
