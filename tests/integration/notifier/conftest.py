"""One stack database, one set of topics, a projector, a receiver and a notifier process
shared by the tests of a module (a notifier takes seconds to join its group)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from db.api_keys import create_api_key
from db.engine import create_engine
from db.projector.config import ProjectorConfig
from db.projector.service import Projector
from db.webhook_secrets import webhook_secret_of
from ops.kafka.topics import apply_topics, default_topic_specs
from schemas.codec import EventCodec
from schemas.events import utc_now
from tests.integration.notifier.receiver import Receiver
from tests.integration.projector.helpers import EventProducer
from tests.support.stack import RunningStack, stack_env
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

TEMPLATE_DB = "whisperstream_template"
FALLBACK_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
NOTIFIER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_TIMEOUT_S": "1.5",
    "WEBHOOK_RETRY_SCHEDULE": "300ms,600ms",
    "WEBHOOK_POLL_INTERVAL_S": "0.1",
    "WEBHOOK_SECRET": FALLBACK_SECRET,
    # small, so that a slow receiver's share is visible (test_a_slow_receiver_...)
    "WEBHOOK_CONCURRENCY": "4",
    "WEBHOOK_CONCURRENCY_PER_HOST": "2",
}


@dataclass
class NotifierProcess:
    """``whisperstream notifier`` as a child process, so a test can ``kill -9`` it."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> int:
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "whisperstream.cli.main", "notifier"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def wait_killed(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()


@dataclass
class Webhooks:
    settings: Settings
    engine: AsyncEngine
    events: EventProducer
    receiver: Receiver
    notifier: NotifierProcess
    key_id: str
    key_name: str
    secret: str
    metrics_url: str


def _admin_url(settings: Settings) -> str:
    return f"postgresql://postgres@127.0.0.1:{settings.stack_postgres_port}/postgres"


@pytest.fixture(scope="module")
def module_database(running_stack: RunningStack) -> Iterator[str]:
    """A migrated database of the module's own (no other notifier claims its rows)."""
    settings = running_stack.settings
    name = f"n_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(settings), autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    try:
        yield f"postgresql://postgres@127.0.0.1:{settings.stack_postgres_port}/{name}"
    finally:
        with psycopg.connect(_admin_url(settings), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def module_settings(running_stack: RunningStack, module_database: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    base = running_stack.settings
    topics = {
        name: f"{getattr(base, name)}.{suffix}"
        for name in (
            "topic_requests_high",
            "topic_requests_normal",
            "topic_requests_retry",
            "topic_control",
            "topic_status",
            "topic_dlq",
            "topic_workers",
        )
    }
    settings = base.model_copy(
        update={
            **topics,
            "database_url": module_database,
            "notifier_group_id": f"notifier-{suffix}",
            "projector_group_id": f"projector-{suffix}",
        }
    )
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    apply_topics(admin, default_topic_specs(settings))
    return settings


def notifier_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **stack_env(settings),
        "DATABASE_URL": settings.effective_database_url,
        "TOPIC_STATUS": settings.topic_status,
        "NOTIFIER_GROUP_ID": settings.notifier_group_id,
        **NOTIFIER_ENV,
        **extra,
    }


@pytest.fixture(scope="module")
async def webhooks(
    module_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Webhooks]:
    settings = module_settings
    engine = create_engine(settings.effective_database_url)
    key_name = f"hooks-{uuid.uuid4().hex[:6]}"
    _, key = await create_api_key(engine, name=key_name, at=utc_now())
    secret = await webhook_secret_of(engine, key.id)
    assert secret is not None
    receiver = Receiver()
    await receiver.start()
    log_path = tmp_path_factory.mktemp("notifier") / "notifier.log"
    metrics_port = free_port()
    notifier = NotifierProcess(
        notifier_env(settings, NOTIFIER_METRICS_PORT=str(metrics_port)), log_path
    )
    codec = EventCodec()
    producer = EventProducer(
        Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 2}), codec
    )
    projector = Projector(ProjectorConfig.from_settings(settings), engine, codec)
    projecting = asyncio.create_task(projector.run())
    receiver.kill_pid = notifier.start()
    try:
        yield Webhooks(
            settings,
            engine,
            producer,
            receiver,
            notifier,
            str(key.id),
            key_name,
            secret,
            f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        notifier.stop()
        projector.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(projecting, 60)
        producer.flush()
        await receiver.stop()
        codec.close()
        await engine.dispose()
