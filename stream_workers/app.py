"""`whisperstream worker`: one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from stream_workers.config import WorkerTuning
from stream_workers.faust_app import build_app
from stream_workers.service import WorkerService
from whisperstream.logs import activity_logger, set_worker_id
from whisperstream.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, tuning: WorkerTuning) -> int:
    service = WorkerService(settings, tuning)
    set_worker_id(service.worker_id)
    app: Any = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
        app = build_app(service)
        await app.start()
        activity_logger().info(
            "ready: worker %s, %d job(s) at once", service.worker_id, settings.worker_concurrency
        )
        fatal = asyncio.ensure_future(service.fatal.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({fatal, stopping}, return_when=asyncio.FIRST_COMPLETED)
        fatal.cancel()
        stopping.cancel()
        log.info("worker %s stopping: no new jobs", service.worker_id)
        drained = await service.drain()
        await app.consumer.commit()
        log.info("worker %s stopped (%s)", service.worker_id, "drained" if drained else "cut")
        return 1 if service.fatal.is_set() else 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if app is not None:
            await app.stop()
        await service.close()


def run_worker(settings: Settings, tuning: WorkerTuning) -> int:
    return asyncio.run(serve(settings, tuning))
