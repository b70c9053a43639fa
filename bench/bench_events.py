"""Live job events and the OpenAI-compatible endpoint on the whole system (`up --volatile`).

1. Fan-out: N streams of `GET /jobs/events` (an admin key: every event to every stream)
   held by the one API process while status events are produced straight to the status
   topic; the latency of each delivery is its arrival minus the event's `occurred_at`.
2. One job each: N streams of `GET /transcribe/{id}/events` (N job rows), one status
   event per job at a steady rate.
3. `POST /v1/audio/transcriptions` with jfk.flac through the `openai` SDK: the client's
   wall time minus the job's own processing time (the worker's `processing_ms`), against
   the same figure for the native path (POST /transcribe, follow its event stream, GET
   the json result).

Streams, producer and client all run in this process, on the same host as the system:
the latencies include this client's own queueing. Run: `python -m bench.bench_events`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import openai
import psutil
from confluent_kafka import KafkaError, Message

from bench.report import Figure, add_json_option, emit, nearest_rank
from db.api_support import insert_new_job
from db.engine import create_engine
from schemas.codec import EventCodec
from schemas.events import JobStatus, JobStatusChanged, new_event_id, utc_now
from tests.support.audio import JFK_FLAC
from tests.support.sample_events import minimal_request
from tests.support.system import System, running_system
from whisperstream.kafka_producer import KafkaProducer


@dataclass
class Streams:
    expected: int
    opened: int = 0
    failed: int = 0
    received: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    """Arrival minus the event's occurred_at (taken just before it was produced)."""
    arrivals: list[tuple[int, float]] = field(default_factory=list)
    acks: dict[int, float] = field(default_factory=dict)
    """When the broker acknowledged each event (by seq): from then on it can be read."""
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, index: int, seq: int, arrived: float, latency_s: float) -> None:
        self.arrivals.append((seq, arrived))
        self.latencies_s.append(latency_s)
        self.received[index] = self.received.get(index, 0) + 1
        if len(self.latencies_s) >= self.expected:
            self.complete.set()

    def after_ack(self, p: float) -> float:
        """The p-th percentile of arrival minus the broker's acknowledgement, in ms: the
        feed's and the stream's share, without the producer's."""
        after = [t - self.acks[seq] for seq, t in self.arrivals if seq in self.acks]
        return nearest_rank(after, p) * 1000

    def percentile(self, p: float) -> float:
        """In milliseconds."""
        return nearest_rank(self.latencies_s, p) * 1000


@dataclass(frozen=True)
class StreamCase:
    name: str
    streams: int
    events: int
    deliveries_expected: int
    result: Streams
    api_rss_mb: float
    api_cpu_s: float
    """The API process's CPU seconds from the first stream opening to the last delivery."""
    client_cpu_s: float
    """This process's (the streams' reader and the producer): on a small machine it
    competes with the API for the same cores."""
    held: int
    """Streams still open at the end that got every event meant for them."""


async def _read_stream(
    session: aiohttp.ClientSession,
    *,
    url: str,
    index: int,
    results: Streams,
    opened: asyncio.Event,
    headers: dict[str, str],
) -> None:
    try:
        async with session.get(url, headers=headers) as response:
            if response.status != 200:
                results.failed += 1
                return
            results.opened += 1
            opened.set()
            async for raw in response.content:
                line = raw.decode()
                if not line.startswith("data:"):
                    continue
                arrived = time.time()
                data = json.loads(line[5:])
                if not data.get("seq"):  # a state event, or the producer's warm-up (seq 0)
                    continue
                sent = datetime.fromisoformat(data["occurred_at"]).timestamp()
                results.record(index, int(data["seq"]), arrived, arrived - sent)
    except (aiohttp.ClientError, asyncio.CancelledError):
        return


def _status(job_id: str, seq: int) -> JobStatusChanged:
    return JobStatusChanged(
        event_id=new_event_id(),
        job_id=job_id,
        occurred_at=utc_now(),
        attempt=1,
        seq=seq,
        status=JobStatus.PROCESSING,
        progress=0.5,
        worker_id="bench",
        engine=None,
        model=None,
        error=None,
        result=None,
        timing=None,
    )


async def _produce(
    system: System, job_ids: list[str], rate_per_s: float, acks: dict[int, float]
) -> None:
    """Produce one status event per job at a steady rate, on a thread of its own.

    The streams' reading keeps this process's event loop busy: a producer on that loop
    would hand events over late and see their acknowledgements late, and both would
    count as the system's latency. Here each event is handed to librdkafka as its time
    is taken, and its acknowledgement is timed on the producer's poll thread. One
    warm-up event (seq 0, a job nobody follows) is acknowledged first, so the timed
    events find a producer already connected, as a worker's is.
    """
    settings = system.settings
    producer = KafkaProducer.from_settings(settings, client_id="bench-events")
    await producer.start()
    codec = EventCodec(None)
    try:
        await producer.send(
            settings.topic_status, "warm-up", codec.encode(_status(str(uuid.uuid4()), 0))
        )
        await asyncio.to_thread(
            functools.partial(
                _produce_at_rate,
                producer,
                codec,
                topic=settings.topic_status,
                job_ids=job_ids,
                rate_per_s=rate_per_s,
                acks=acks,
            )
        )
    finally:  # close() waits for every acknowledgement
        await producer.close()
        codec.close()


def _produce_at_rate(
    producer: KafkaProducer,
    codec: EventCodec,
    *,
    topic: str,
    job_ids: list[str],
    rate_per_s: float,
    acks: dict[int, float],
) -> None:
    def acknowledged(seq: int) -> Callable[[KafkaError | None, Message], None]:
        def record(err: KafkaError | None, _message: Message) -> None:
            if err is None:
                acks[seq] = time.time()

        return record

    started = time.monotonic()
    for index, job_id in enumerate(job_ids):
        time.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
        event = _status(job_id, index + 1)  # occurred_at: as it is handed to the producer
        producer.produce(topic, job_id, codec.encode(event), acknowledged(event.seq))


def _api_process(system: System) -> psutil.Process | None:
    port = int(system.api_url.rsplit(":", 1)[1])
    for connection in psutil.net_connections(kind="tcp"):
        address = connection.laddr
        if connection.status == psutil.CONN_LISTEN and getattr(address, "port", None) == port:
            return psutil.Process(connection.pid) if connection.pid else None
    return None


async def _hold(
    system: System,
    *,
    name: str,
    urls: list[str],
    produce: Callable[[dict[int, float]], Awaitable[None]],
    deliveries_per_stream: list[int],
    headers: dict[str, str],
) -> StreamCase:
    results = Streams(sum(deliveries_per_stream))
    api = _api_process(system)
    cpu_before = sum(api.cpu_times()[:2]) if api is not None else float("nan")
    client_before = sum(psutil.Process().cpu_times()[:2])
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        for start in range(0, len(urls), 50):  # open them 50 at a time
            batch = []
            for index in range(start, min(start + 50, len(urls))):
                opened = asyncio.Event()
                tasks.append(
                    asyncio.create_task(
                        _read_stream(
                            session,
                            url=urls[index],
                            index=index,
                            results=results,
                            opened=opened,
                            headers=headers,
                        )
                    )
                )
                batch.append(opened)
            await asyncio.wait([asyncio.create_task(e.wait()) for e in batch], timeout=30)
        await asyncio.sleep(1.0)
        await produce(results.acks)
        expected = results.expected
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(results.complete.wait(), 60)
        rss = api.memory_info().rss / 2**20 if api is not None else float("nan")
        cpu = sum(api.cpu_times()[:2]) - cpu_before if api is not None else float("nan")
        client_cpu = sum(psutil.Process().cpu_times()[:2]) - client_before
        held = sum(
            1
            for index, wanted in enumerate(deliveries_per_stream)
            if results.received.get(index, 0) == wanted and not tasks[index].done()
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return StreamCase(name, len(urls), 0, expected, results, rss, cpu, client_cpu, held)


async def fan_out(system: System, streams: int, events: int, rate: float) -> StreamCase:
    url = f"{system.api_url}/jobs/events"
    job_ids = [str(uuid.uuid4()) for _ in range(events)]
    case = await _hold(
        system,
        name="every event to every stream (/jobs/events)",
        urls=[url] * streams,
        produce=lambda acks: _produce(system, job_ids, rate, acks),
        deliveries_per_stream=[events] * streams,
        headers={"Authorization": f"Bearer {system.admin_key}"},
    )
    return dataclasses.replace(case, events=events)


async def one_job_each(system: System, streams: int, rate: float) -> StreamCase:
    engine = create_engine(system.database_url)
    job_ids = [str(uuid.uuid4()) for _ in range(streams)]
    try:
        template = minimal_request()
        for job_id in job_ids:
            await insert_new_job(
                engine,
                dataclasses.replace(
                    template, job_id=job_id, event_id=new_event_id(), occurred_at=utc_now()
                ),
            )
    finally:
        await engine.dispose()
    case = await _hold(
        system,
        name="one job per stream (/transcribe/{id}/events)",
        urls=[f"{system.api_url}/transcribe/{job_id}/events" for job_id in job_ids],
        produce=lambda acks: _produce(system, job_ids, rate, acks),
        deliveries_per_stream=[1] * streams,
        headers={"Authorization": f"Bearer {system.admin_key}"},
    )
    return dataclasses.replace(case, events=streams)


@dataclass(frozen=True)
class Overhead:
    name: str
    added_ms: list[float] = field(default_factory=list)
    """The client's wall time minus the job's processing_ms."""
    processing_ms: list[float] = field(default_factory=list)
    queued_ms: list[float] = field(default_factory=list)
    """From the request event to the worker's processing event (the worker's pickup)."""
    endpoint_ms: list[float] = field(default_factory=list)
    """The wall time minus the job's life from request event to completed event: what
    the path adds before the job is queued (upload) and after it ends (to the client)."""

    def add(self, wall_ms: float, job: dict[str, Any]) -> None:
        created, started, completed = (
            datetime.fromisoformat(job[name]).timestamp() * 1000
            for name in ("created_at", "started_at", "completed_at")
        )
        processing = float(job["result"]["processing_ms"])
        self.added_ms.append(wall_ms - processing)
        self.processing_ms.append(processing)
        self.queued_ms.append(started - created)
        self.endpoint_ms.append(wall_ms - (completed - created))


async def _finished_job(
    session: aiohttp.ClientSession, system: System, job_id: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {system.admin_key}"}
    for _ in range(300):
        async with session.get(f"{system.api_url}/transcribe/{job_id}", headers=headers) as r:
            job: dict[str, Any] = await r.json()
        if job["status"] == "completed" and job["result"] and job["completed_at"]:
            return job
        await asyncio.sleep(0.1)
    raise RuntimeError(f"job {job_id} did not complete")


async def overheads(system: System, runs: int) -> list[Overhead]:
    client = openai.AsyncOpenAI(
        base_url=f"{system.api_url}/v1", api_key=system.admin_key, max_retries=0, timeout=300
    )
    headers = {"Authorization": f"Bearer {system.admin_key}"}
    audio = JFK_FLAC.read_bytes()
    via_openai = Overhead("POST /v1/audio/transcriptions (openai SDK)")
    native = Overhead("native: POST /transcribe, its events, GET json (waits for PG)")
    async with aiohttp.ClientSession() as session:
        for run in range(runs + 1):  # the first of each warms the model and the paths
            started = time.perf_counter()
            raw = await client.audio.transcriptions.with_raw_response.create(
                file=("jfk.flac", audio), model="whisper-1"
            )
            raw.parse()
            wall_ms = (time.perf_counter() - started) * 1000
            job = await _finished_job(session, system, raw.headers["x-whisperstream-job-id"])
            if run:
                via_openai.add(wall_ms, job)

            started = time.perf_counter()
            form = aiohttp.FormData()
            form.add_field("file", audio, filename="jfk.flac", content_type="audio/flac")
            async with session.post(
                f"{system.api_url}/transcribe", data=form, headers=headers
            ) as response:
                job_id = (await response.json())["job_id"]
            async with session.get(
                f"{system.api_url}/transcribe/{job_id}/events", headers=headers
            ) as stream:
                async for line in stream.content:
                    if line.startswith(b"data:") and b'"completed"' in line:
                        break
            for _ in range(100):  # the row follows the stream by a moment
                async with session.get(
                    f"{system.api_url}/transcribe/{job_id}",
                    params={"format": "json"},
                    headers=headers,
                ) as result:
                    await result.read()
                    if result.status == 200:
                        break
                await asyncio.sleep(0.02)
            wall_ms = (time.perf_counter() - started) * 1000
            job = await _finished_job(session, system, job_id)
            if run:
                native.add(wall_ms, job)
    await client.close()
    return [via_openai, native]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def print_streams(cases: list[StreamCase]) -> None:
    print(
        "event latency: arrival minus occurred_at (set as the event is handed to the "
        "producer); 'ack': arrival minus the broker's acknowledgement"
    )
    print(
        f"| {'case':<45} | streams | held | events | deliveries | p50 ms | p99 ms | "
        "p50 ack | p99 ack | API RSS MB | API CPU s | client CPU s |"
    )
    print(
        f"|{'-' * 47}|---------|------|--------|------------|--------|--------|---------"
        "|---------|------------|-----------|--------------|"
    )
    for c in cases:
        r = c.result
        print(
            f"| {c.name:<45} | {c.streams:>7} | {c.held:>4} | {c.events:>6} "
            f"| {len(r.latencies_s):>5}/{c.deliveries_expected:<5}"
            f"| {r.percentile(50):>6.1f} | {r.percentile(99):>6.1f} "
            f"| {r.after_ack(50):>7.1f} | {r.after_ack(99):>7.1f} | {c.api_rss_mb:>10.0f} "
            f"| {c.api_cpu_s:>9.1f} | {c.client_cpu_s:>12.1f} |"
        )


def print_overheads(rows: list[Overhead]) -> None:
    print("medians in ms over the runs; added = wall - processing = queue wait + path")
    print(
        f"| {'path (jfk.flac, 11 s)':<62} | runs | processing | added | added max "
        "| queue wait | path |"
    )
    print(f"|{'-' * 64}|------|------------|-------|-----------|------------|------|")
    for row in rows:
        print(
            f"| {row.name:<62} | {len(row.added_ms):>4} "
            f"| {statistics.median(row.processing_ms):>10.0f} "
            f"| {statistics.median(row.added_ms):>5.0f} | {max(row.added_ms):>9.0f} "
            f"| {statistics.median(row.queued_ms):>10.0f} "
            f"| {statistics.median(row.endpoint_ms):>4.0f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--fan-out-events", type=int, default=20)
    parser.add_argument("--fan-out-rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--job-rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--openai-runs", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()
    unlimited = {"API_RATE_LIMIT_PER_S": "1000000", "API_RATE_LIMIT_BURST": "1000000"}
    with running_system(**unlimited) as system:
        load_before = _load()
        cases = [
            asyncio.run(fan_out(system, args.streams, args.fan_out_events, args.fan_out_rate)),
            asyncio.run(one_job_each(system, args.streams, args.job_rate)),
        ]
        rows = asyncio.run(overheads(system, args.openai_runs))
        load_after = _load()
    print(f"whole system (up --volatile) on this host; {load_before} before, {load_after} after")
    print_streams(cases)
    print_overheads(rows)
    fan, each = cases
    openai_added = statistics.median(rows[0].added_ms)
    held = min(fan.held, each.held)
    p99 = max(fan.result.percentile(99), each.result.percentile(99))
    acked_p99 = max(fan.result.after_ack(99), each.result.after_ack(99))
    print(
        f"targets: >= 1,000 streams held: {'met' if held >= 1000 else 'NOT met'} ({held}); "
        f"p99 event latency < 500 ms: {'met' if p99 < 500 else 'NOT met'} ({p99:.0f} ms; "
        f"after the broker's ack {acked_p99:.0f} ms); "
        f"OpenAI added latency < 150 ms: {'met' if openai_added < 150 else 'NOT met'} "
        f"({openai_added:.0f} ms, of which the worker's pickup "
        f"{statistics.median(rows[0].queued_ms):.0f} ms and the endpoint's own path "
        f"{statistics.median(rows[0].endpoint_ms):.0f} ms)"
    )
    emit(
        args.json,
        [
            Figure("SSE streams held by one API process", held, "streams", ">= 1,000"),
            Figure("fan-out event latency p50", fan.result.percentile(50), "ms"),
            Figure("fan-out event latency p99", fan.result.percentile(99), "ms", "< 500"),
            Figure("one-job streams event latency p50", each.result.percentile(50), "ms"),
            Figure("one-job streams event latency p99", each.result.percentile(99), "ms", "< 500"),
            Figure("fan-out latency after the broker's ack p99", fan.result.after_ack(99), "ms"),
            Figure("one-job latency after the broker's ack p99", each.result.after_ack(99), "ms"),
            Figure("API RSS with the streams open", max(fan.api_rss_mb, each.api_rss_mb), "MB"),
            Figure("OpenAI endpoint added latency (jfk.flac)", openai_added, "ms", "< 150"),
            Figure(
                "native path added latency (jfk.flac)", statistics.median(rows[1].added_ms), "ms"
            ),
            Figure(
                "OpenAI endpoint's own overhead (added minus the worker's pickup)",
                statistics.median(rows[0].endpoint_ms),
                "ms",
            ),
            Figure(
                "worker pickup (request to processing)", statistics.median(rows[0].queued_ms), "ms"
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
