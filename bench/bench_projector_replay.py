"""100,000 events produced to the real broker, then replayed by the projector into Postgres.

    python -m bench.bench_projector_replay [--events 100000] [--batch-events 2000]
        [--batch-ms 200] [--steps 9]

It starts a volatile local stack (Tansu, SeaweedFS, embedded Postgres) on random ports
in a temporary directory, creates fresh topics and a fresh database, produces the events
(each job: one request, then ``--steps`` status events, the last one ``completed``), and
then times one projector (the same ``Projector`` class ``whisperstream projector`` runs)
from its start, group join included, until every record is committed in Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from psycopg import sql
from sqlalchemy import func, select

from bench.report import Figure, add_json_option, emit
from db.engine import create_engine
from db.migrate import upgrade_to_head
from db.models import jobs_table
from db.projector.config import ProjectorConfig
from db.projector.service import Projector
from ops.kafka.topics import apply_topics, default_topic_specs
from schemas.codec import EventCodec
from schemas.events import JobStatus
from tests.support.fold_events import at, request, status
from whisperstream.settings import Settings, load_settings
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.ports import free_port


@dataclass(frozen=True)
class Result:
    events: int
    status_events: int
    jobs: int
    produce_s: float
    join_s: float
    replay_s: float
    cpu_s: float
    """CPU time of this process (the projector's threads) from its start to the end."""

    @property
    def fold_s(self) -> float:
        return self.replay_s - self.join_s


def produce(settings: Settings, codec: EventCodec, events: int, steps: int) -> tuple[int, int]:
    """Produce ``events`` records; returns (status events, jobs)."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 200_000,
        }
    )
    sent = statuses = jobs = 0
    while sent < events:
        job = uuid.uuid4()
        key = str(job).encode()
        jobs += 1
        base = jobs * 0.01
        producer.produce(
            settings.topic_requests_normal,
            codec.encode(request(job, occurred_at=at(base))),
            key=key,
        )
        sent += 1
        for seq in range(steps):
            if sent == events:
                break
            last = seq == steps - 1
            event = status(
                job,
                occurred_at=at(base + seq + 1),
                seq=seq,
                status=JobStatus.COMPLETED if last else JobStatus.PROCESSING,
                progress=seq / steps,
            )
            producer.produce(settings.topic_status, codec.encode(event), key=key)
            producer.poll(0)
            sent += 1
            statuses += 1
    if producer.flush(120) != 0:
        raise RuntimeError("records left unsent")
    return statuses, jobs


async def replay(
    settings: Settings, codec: EventCodec, database_url: str, events: int
) -> tuple[float, float, float]:
    """Seconds until the first assignment and until all ``events`` are in Postgres, and
    the CPU seconds this process spent meanwhile (less disturbed by a busy machine)."""
    engine = create_engine(database_url)
    projector = Projector(ProjectorConfig.from_settings(settings), engine, codec)
    began = time.perf_counter()
    cpu_began = time.process_time()
    task = asyncio.create_task(projector.run())
    join_s = 0.0
    try:
        while projector.stats.applied < events:
            if task.done():
                task.result()
                raise RuntimeError("the projector stopped early")
            if not join_s and projector.stats.assignments:
                join_s = time.perf_counter() - began
            await asyncio.sleep(0.05)
        replay_s = time.perf_counter() - began
        cpu_s = time.process_time() - cpu_began
        projector.stop()
        await task
        async with engine.connect() as connection:
            done = await connection.scalar(
                select(func.count()).where(jobs_table.c.status == JobStatus.COMPLETED.value)
            )
        print(f"completed jobs in Postgres: {done}")
    finally:
        if not task.done():
            projector.stop()
            await task
        await engine.dispose()
    return join_s, replay_s, cpu_s


def fresh_database(settings: Settings) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = f"postgresql://postgres@127.0.0.1:{settings.stack_postgres_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{settings.stack_postgres_port}/{name}"
    upgrade_to_head(url)
    return url


def run(args: argparse.Namespace, state_dir: Path) -> Result:
    suffix = uuid.uuid4().hex[:6]
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        stack_postgres_port=free_port(),
        whisperstream_state_dir=state_dir,
        database_url=None,
        projector_group_id=f"bench-projector-{suffix}",
        projector_batch_max_events=args.batch_events,
        projector_batch_max_ms=args.batch_ms,
    )
    stack = LocalStack(settings)
    stack.up(volatile=True)
    try:
        names = {
            name: f"{getattr(settings, name)}.{suffix}"
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
        settings = settings.model_copy(update=names)
        apply_topics(
            AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}),
            default_topic_specs(settings),
        )
        database_url = fresh_database(settings)
        with EventCodec() as codec:
            began = time.perf_counter()
            statuses, jobs = produce(settings, codec, args.events, args.steps)
            produce_s = time.perf_counter() - began
            join_s, replay_s, cpu_s = asyncio.run(
                replay(settings, codec, database_url, args.events)
            )
    finally:
        stack.down()
    return Result(args.events, statuses, jobs, produce_s, join_s, replay_s, cpu_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-events", type=int, default=2000)
    parser.add_argument("--batch-ms", type=int, default=200)
    parser.add_argument("--steps", type=int, default=9, help="status events per job")
    add_json_option(parser)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        r = run(args, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    print(
        f"projector replay: {r.events:,} events ({r.jobs:,} jobs, {r.status_events:,} status), "
        f"batch {args.batch_events} events / {args.batch_ms} ms, "
        f"cpus={os.cpu_count()}, {platform.processor() or platform.machine()}"
    )
    rows = [
        ("produce to the broker", r.produce_s, r.events),
        ("replay, group join included", r.replay_s, r.events),
        ("replay after the group join", r.fold_s, r.events),
        ("status events (after the join)", r.fold_s, r.status_events),
    ]
    print(f"{'phase':<32} {'seconds':>8} {'events':>9} {'events/s':>10}")
    for name, seconds, count in rows:
        print(f"{name:<32} {seconds:>8.2f} {count:>9,} {count / seconds:>10,.0f}")
    print(f"projector CPU time (this process) during the replay: {r.cpu_s:.2f} s")
    print(f"group join: {r.join_s:.2f} s; target: 100,000 events in < 60 s, status >= 5,000/s")
    emit(
        args.json,
        [
            Figure(f"replay of {r.events:,} events, group join included", r.replay_s, "s", "< 60"),
            Figure("replay, events/s after the group join", r.events / r.fold_s, "events/s"),
            Figure(
                "status events folded during replay",
                r.status_events / r.fold_s,
                "events/s",
                ">= 5,000",
            ),
            Figure(f"projector CPU time for {r.events:,} events", r.cpu_s, "s"),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
