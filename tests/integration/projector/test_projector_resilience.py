"""Postgres going away mid-stream, and SIGTERM on the real `whisperstream projector`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from db.engine import create_engine
from db.migrate import upgrade_to_head
from db.projector import retry
from schemas.events import JobStatus, SourcePosition
from tests.integration.projector.helpers import (
    EventProducer,
    StartProjector,
    eventually,
    projector_config,
    stored_offsets,
    table_rows,
)
from tests.support.fold_events import at, dead_letter, request, status
from tests.support.stack import RunningStack, stack_state_dir
from whisperstream.settings import Settings
from whisperstream.stack import processes
from whisperstream.stack.ports import free_port
from whisperstream.stack.postgres import PostgresTarget, ensure_database, start_postgres
from whisperstream.stack.processes import ManagedProcess
from whisperstream.stack.readiness import check_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRY_LOGGER = retry.log.name
STEPS = [(JobStatus.PROCESSING, 0.0), (JobStatus.PROCESSING, 0.5), (JobStatus.COMPLETED, 1.0)]


@dataclass
class OwnPostgres:
    """A Postgres of this test alone, so stopping it disturbs no other test."""

    target: PostgresTarget
    state_dir: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        t = self.target
        return f"postgresql+asyncpg://{t.user}@{t.host}:{t.port}/{t.database}"

    def start(self) -> None:
        self.process = start_postgres(self.target, self.state_dir, volatile=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                check_postgres(self.target.admin_url(), 2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def crash(self) -> None:
        """SIGQUIT: immediate shutdown, no checkpoint; crash recovery at the next start."""
        assert self.process is not None
        processes.stop(self.process, sig=signal.SIGQUIT)
        self.process = None


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    with stack_state_dir() as state_dir:
        target = PostgresTarget("127.0.0.1", free_port(), "postgres", "whisperstream")
        postgres = OwnPostgres(target, state_dir)
        postgres.start()
        try:
            ensure_database(target)
            upgrade_to_head(postgres.url)
            yield postgres
        finally:
            if postgres.process is not None:
                processes.stop(postgres.process, sig=signal.SIGINT)


def _database_retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The projector's "database unavailable, next try in ..." warnings so far."""
    return [r for r in caplog.records if r.name == RETRY_LOGGER and r.levelno == logging.WARNING]


def produce_wave(producer: EventProducer, settings: Settings, jobs: list[uuid.UUID]) -> int:
    for n, job in enumerate(jobs):
        producer.send(settings.topic_requests_normal, request(job, occurred_at=at(n)))
        for seq, (state, progress) in enumerate(STEPS):
            event = status(
                job, occurred_at=at(n + seq + 1), seq=seq, status=state, progress=progress
            )
            producer.send(settings.topic_status, event)
    producer.flush()
    return len(jobs) * (1 + len(STEPS))


async def test_postgres_stopped_mid_stream_loses_nothing_and_applies_nothing_twice(
    fresh_topics: Settings,
    own_postgres: OwnPostgres,
    producer: EventProducer,
    start_projector: StartProjector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    engine = create_engine(own_postgres.url)
    try:
        config = projector_config(fresh_topics, batch_max_events=25, batch_max_ms=50)
        running = await start_projector(config, engine)
        first = [uuid.uuid4() for _ in range(60)]
        second = [uuid.uuid4() for _ in range(60)]
        sent = produce_wave(producer, fresh_topics, first)

        async def some_applied() -> bool:
            return running.stats.applied >= 25

        await eventually(some_applied, what="the first batches")
        await asyncio.to_thread(own_postgres.crash)
        applied_before_outage = running.stats.applied

        # the stream goes on while Postgres is down, dead letters included
        sent += produce_wave(producer, fresh_topics, second)
        for n, job in enumerate(second[:2]):
            source = SourcePosition(topic=fresh_topics.topic_requests_normal, partition=0, offset=n)
            producer.send(
                fresh_topics.topic_dlq, dead_letter(job, occurred_at=at(99), source=source)
            )
        producer.flush()
        sent += 2
        # The projector has had its chance to give up (or to claim the stream done) once
        # it has failed to reach Postgres again after all of it was produced.
        retries_before = len(_database_retries(caplog))

        async def retried_since() -> bool:
            return running.task.done() or len(_database_retries(caplog)) > retries_before

        await eventually(retried_since, what="a database retry after the second wave")
        assert not running.task.done(), "the projector must wait for Postgres, not exit"
        assert running.stats.applied < sent, "Postgres was down: the stream cannot be done yet"

        await asyncio.to_thread(own_postgres.start)

        async def caught_up() -> bool:
            return sum((await stored_offsets(engine, config.group_id)).values()) >= sent

        await eventually(caught_up, within_s=120, what="catching up after the outage")
        stats = await running.stop()

        assert sum((await stored_offsets(engine, config.group_id)).values()) == sent
        rows = await table_rows(engine)
        assert {row["id"] for row in rows["jobs"]} == set(first) | set(second)
        for row in rows["jobs"]:
            assert (row["status"], row["last_seq"], row["has_request"]) == ("completed", 2, True)
        assert len(rows["results"]) == len(first) + len(second)
        assert len(rows["errors"]) == 2
        # A record folded twice would count twice here; only a commit whose answer was
        # lost with the connection is counted as skipped on the retry instead.
        assert stats.applied + stats.skipped >= sent
        assert stats.applied <= sent
        assert applied_before_outage < stats.applied
    finally:
        await engine.dispose()


async def test_sigterm_finishes_the_batch_commits_and_exits(
    running_stack: RunningStack,
    fresh_topics: Settings,
    fresh_database_url: str,
    producer: EventProducer,
) -> None:
    jobs = [uuid.uuid4() for _ in range(20)]
    sent = produce_wave(producer, fresh_topics, jobs)
    group = f"projector-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **running_stack.env,
        "DATABASE_URL": fresh_database_url,
        "PROJECTOR_GROUP_ID": group,
        "PROJECTOR_BATCH_MAX_EVENTS": "10",
        **{
            name.upper(): getattr(fresh_topics, name)
            for name in ("topic_requests_high", "topic_requests_normal", "topic_requests_retry")
        },
        "TOPIC_STATUS": fresh_topics.topic_status,
        "TOPIC_CONTROL": fresh_topics.topic_control,
        "TOPIC_DLQ": fresh_topics.topic_dlq,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whisperstream.cli.main",
        "projector",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    engine = create_engine(fresh_database_url)
    try:

        async def caught_up() -> bool:
            return sum((await stored_offsets(engine, group)).values()) >= sent

        await eventually(caught_up, what="the projector process to apply the stream")
        child.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0, output.decode(errors="replace")
        assert b"projector stopped" in output
        stored = await stored_offsets(engine, group)
    finally:
        if child.returncode is None:
            child.kill()
            await child.communicate()
        await engine.dispose()

    admin = AdminClient({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in future.result(timeout=30).topic_partitions
    }
    assert {p: o for p, o in committed.items() if o >= 0} == stored
