"""Webhook deliveries per second from the notifier to a local receiver, and its CPU cost.

    python -m bench.bench_webhooks [--deliveries 5000] [--concurrency 64] [--per-host 64]

It starts a volatile local stack on random ports, a fresh database and topics, puts
``--deliveries`` jobs (with a callback_url to a receiver on loopback and an API key as
owner) in the projection, produces their ``completed`` status events, and then runs
the same ``Notifier`` that ``whisperstream notifier`` runs, in this process, until every
delivery is recorded as succeeded.  The receiver runs in a process of its own.

Figures: deliveries per second between the first and the last recorded attempt (the
steady rate: Kafka consumption, scheduling, signing, the POST, the record), the whole
run with the group join, this process's CPU time per delivery, and that of Postgres,
the broker and the receiver over the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.bench_projector_replay import fresh_database
from bench.report import Figure, add_json_option, emit
from db.api_keys import create_api_key
from db.engine import create_engine
from db.models import jobs_table, webhook_deliveries_table
from notifier.service import Notifier, NotifierConfig
from ops.kafka.topics import apply_topics, default_topic_specs
from schemas.codec import EventCodec
from schemas.events import (
    JobStatus,
    JobStatusChanged,
    JobTiming,
    ResultSummary,
    new_event_id,
    utc_now,
)
from whisperstream.settings import Settings, load_settings
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.ports import free_port


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (Postgres: the postmaster and
    its backends), as of now."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class Result:
    deliveries: int
    steady_s: float
    total_s: float
    cpu_s: float
    others_cpu_s: dict[str, float]
    """CPU seconds of the other processes during the deliveries: Postgres, the broker,
    the receiver."""

    @property
    def per_second(self) -> float:
        return (self.deliveries - 1) / self.steady_s

    @property
    def cpu_ms_per_delivery(self) -> float:
        return self.cpu_s * 1000 / self.deliveries


async def add_jobs(engine: AsyncEngine, count: int, url: str) -> list[uuid.UUID]:
    """Job rows as the projector leaves them once the requests are folded in."""
    _, key = await create_api_key(engine, name="bench", at=utc_now())
    now = utc_now()
    jobs = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as connection:
        for start in range(0, count, 1000):
            await connection.execute(
                insert(jobs_table),
                [
                    {
                        "id": job,
                        "status": "processing",
                        "has_request": True,
                        "callback_url": url,
                        "owner": str(key.id),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for job in jobs[start : start + 1000]
                ],
            )
    return jobs


def produce_completions(settings: Settings, codec: EventCodec, jobs: list[uuid.UUID]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 20})
    for job in jobs:
        event = JobStatusChanged(
            event_id=new_event_id(),
            job_id=str(job),
            occurred_at=utc_now(),
            attempt=1,
            seq=2,
            status=JobStatus.COMPLETED,
            progress=1.0,
            worker_id="bench",
            engine="faster-whisper",
            model="tiny.en",
            error=None,
            result=ResultSummary(
                "And so, my fellow Americans, ask not what your country can do for you",
                "en",
                11.0,
                14,
                0.9,
                1,
                f"s3://results/{job}.json",
            ),
            timing=JobTiming(10, 700, 15.0),
        )
        producer.produce(settings.topic_status, codec.encode(event), key=str(job).encode())
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("records left unsent")


async def deliver(
    settings: Settings, codec: EventCodec, count: int, others: dict[str, int]
) -> Result:
    engine = create_engine(settings.effective_database_url, pool_size=5, max_overflow=64)
    table = webhook_deliveries_table
    notifier = Notifier(NotifierConfig.from_settings(settings), engine, codec)
    others_began = {name: tree_cpu_s(pid) for name, pid in others.items()}
    began = time.perf_counter()
    cpu_began = time.process_time()
    task = asyncio.create_task(notifier.run())
    try:
        while True:
            if task.done():
                task.result()
                raise RuntimeError("the notifier stopped early")
            async with engine.connect() as connection:
                done = await connection.scalar(
                    select(func.count()).where(table.c.status == "succeeded")
                )
            if (done or 0) >= count:
                break
            await asyncio.sleep(0.2)
        total_s = time.perf_counter() - began
        cpu_s = time.process_time() - cpu_began
        others_cpu = {name: tree_cpu_s(pid) - others_began[name] for name, pid in others.items()}
        async with engine.connect() as connection:
            first, last, failures = (
                await connection.execute(
                    select(
                        func.min(table.c.attempted_at),
                        func.max(table.c.attempted_at),
                        func.count().filter(table.c.status != "succeeded"),
                    )
                )
            ).one()
    finally:
        notifier.stop()
        await task
        await engine.dispose()
    if failures:
        raise RuntimeError(f"{failures} attempts did not succeed")
    return Result(count, (last - first).total_seconds(), total_s, cpu_s, others_cpu)


def wait_for_port(port: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return


def run(args: argparse.Namespace, state_dir: Path) -> Result:
    suffix = uuid.uuid4().hex[:6]
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        stack_postgres_port=free_port(),
        whisperstream_state_dir=state_dir,
        database_url=None,
        notifier_group_id=f"bench-notifier-{suffix}",
        webhook_concurrency=args.concurrency,
        webhook_concurrency_per_host=args.per_host,
        webhook_allow_private_networks=True,
    )
    stack = LocalStack(settings)
    stack.up(volatile=True)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.webhook_receiver", str(port)])
    try:
        wait_for_port(port, 30)
        topics = {
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
        settings = settings.model_copy(update={**topics, "database_url": fresh_database(settings)})
        apply_topics(
            AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}),
            default_topic_specs(settings),
        )

        async def prepare() -> list[uuid.UUID]:
            engine = create_engine(settings.effective_database_url)
            try:
                return await add_jobs(engine, args.deliveries, f"http://127.0.0.1:{port}/hook")
            finally:
                await engine.dispose()

        jobs = asyncio.run(prepare())
        with EventCodec() as codec:
            produce_completions(settings, codec, jobs)
            others = {
                "Postgres": stack.launched["postgres"].pid,
                "broker": stack.launched["broker"].pid,
                "receiver": receiver.pid,
            }
            return asyncio.run(deliver(settings, codec, args.deliveries, others))
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
        stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64, help="WEBHOOK_CONCURRENCY")
    parser.add_argument(
        "--per-host", type=int, default=64, help="WEBHOOK_CONCURRENCY_PER_HOST (one receiver)"
    )
    add_json_option(parser)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        r = run(args, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    print(
        f"webhooks: {r.deliveries:,} signed deliveries to one receiver on loopback, "
        f"concurrency {args.concurrency}, {args.per_host} per host, "
        f"cpus={os.cpu_count()}, {platform.processor() or platform.machine()}"
    )
    rows = [
        ("deliveries/s, first to last attempt", f"{r.per_second:,.0f}", ">= 500"),
        ("whole run, group join included (s)", f"{r.total_s:.2f}", ""),
        ("notifier CPU per delivery (ms)", f"{r.cpu_ms_per_delivery:.2f}", ""),
        ("notifier CPU in all (s)", f"{r.cpu_s:.2f}", ""),
        *(
            (f"{name} CPU per delivery (ms)", f"{seconds * 1000 / r.deliveries:.2f}", "")
            for name, seconds in r.others_cpu_s.items()
        ),
    ]
    print(f"{'figure':<40} {'value':>10} {'target':>8}")
    for name, value, target in rows:
        print(f"{name:<40} {value:>10} {target:>8}")
    emit(
        args.json,
        [
            Figure("webhook deliveries per second", r.per_second, "deliveries/s", ">= 500"),
            Figure("notifier CPU per delivery", r.cpu_ms_per_delivery, "ms"),
            Figure(f"{r.deliveries:,} deliveries, group join included", r.total_s, "s"),
            Figure(
                "Postgres CPU per delivery", r.others_cpu_s["Postgres"] * 1000 / r.deliveries, "ms"
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
