"""The Faust app: one agent per request topic, feeding messages to the WorkerService.

Faust is typed loosely (no stubs), so it stays behind this module. Settings that
matter on Tansu: no leader topic and no declaring topics (every topic exists before
a consumer subscribes), no tables (their recovery needs the watermarks Tansu gets
wrong), `earliest` offset reset, a short session timeout (group joins take about
half of it), a short fetch wait (faust_transport), and the producer is never used for
our events (see kafka_io).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import faust

from schemas.events import SourcePosition
from stream_workers.errors import WorkerStoppingError
from stream_workers.faust_transport import WorkerTransport
from stream_workers.service import WorkerService
from whisperstream.kafka_security import faust_broker_credentials

AgentFun = Callable[[Any], Coroutine[Any, Any, None]]


def app_id(service: WorkerService) -> str:
    """The consumer group: one per set of request topics, shared by all their workers."""
    return f"whisperstream-workers.{service.settings.topic_requests_normal}"


def faust_datadir(service: WorkerService) -> str:
    """Where faust makes its (here always empty) table folders: not the working directory.

    Faust creates `{app id}-data/` in the current directory by default, which would
    litter wherever a user starts a worker; with memory tables nothing is written there.
    """
    return str(Path(tempfile.gettempdir()) / f"{app_id(service)}-{os.getuid()}-faust")


def build_app(service: WorkerService) -> Any:
    settings, tuning = service.settings, service.tuning
    app = faust.App(
        app_id(service),
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        datadir=faust_datadir(service),
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=tuning.session_timeout_s,
        broker_heartbeat_interval=min(1.0, tuning.session_timeout_s / 3),
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    # before anything asks the app for its transport (declaring a topic does)
    app.transport = WorkerTransport(
        app.conf.broker_consumer, app, fetch_max_wait_ms=tuning.worker_fetch_max_wait_ms
    )
    for topic_name in settings.request_topics:
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
        app.agent(topic, name=f"requests-{topic_name}")(_agent(service))
    return app


def _agent(service: WorkerService) -> AgentFun:
    async def consume(stream: Any) -> None:
        events: AsyncIterator[Any] = stream.noack().events()
        async for event in events:
            message = event.message
            position = SourcePosition(message.topic, message.partition, message.offset)

            async def ack(event: Any = event) -> object:
                return await stream.ack(event)

            try:
                await service.admit(message.value, message.key, position, ack)
            except WorkerStoppingError:
                return  # stopping: this message stays unacked, for redelivery

    return consume
