"""Composition root of the projector process (``whisperstream projector``)."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry

from db.engine import create_engine
from db.projector.config import ProjectorConfig
from db.projector.lag import LagMetrics
from db.projector.service import Projector
from schemas.codec import EventCodec
from whisperstream.heartbeat_file import HeartbeatFile
from whisperstream.metrics_server import metrics_server
from whisperstream.settings import Settings

log = logging.getLogger(__name__)


def run_projector(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; the batch in hand is committed before returning."""
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    config = ProjectorConfig.from_settings(settings)
    registry = CollectorRegistry()
    metrics = LagMetrics(registry)
    engine = create_engine(settings.effective_database_url)
    loop = asyncio.get_running_loop()
    try:
        with (
            EventCodec(settings.schema_registry_url) as codec,
            metrics_server(
                "projector", registry, settings.api_host, settings.projector_metrics_port
            ),
        ):
            heartbeat = HeartbeatFile(settings.whisperstream_heartbeat_file)
            projector = Projector(config, engine, codec, metrics=metrics, heartbeat=heartbeat)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, projector.stop)
            log.info("projector %s over %s", config.group_id, ", ".join(config.topics))
            stats = await projector.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await engine.dispose()
    log.info(
        "projector stopped: %d batches, %d records applied, %d skipped",
        stats.batches,
        stats.applied,
        stats.skipped,
    )
    return 0
