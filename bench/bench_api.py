"""Load on the API over loopback: POST of a 1 MB file and GET /transcribe/{id}.

Starts a volatile local stack and the API as a subprocess (`whisperstream api`), creates
an API key, then drives a bounded number of requests with an aiohttp client at a fixed
concurrency and prints throughput and latency percentiles. Workers are not running.
Run: `python -m bench.bench_api` (see --help for the request counts).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.report import Figure, add_json_option, emit, nearest_rank
from db.api_keys import create_api_key
from db.engine import create_engine
from schemas.events import utc_now
from whisperstream.settings import Settings, load_settings
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.ports import free_port


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float]
    errors: int
    api_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        """In milliseconds."""
        return nearest_rank(self.latencies, p) * 1000


def wav_file(size: int) -> bytes:
    data = size - 44
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )
    return header + bytes((i * 37) % 256 for i in range(data))


Request = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


@dataclass(frozen=True)
class Target:
    session: aiohttp.ClientSession
    api: psutil.Process
    """The API process, for the CPU time it spends per request."""


async def drive(target: Target, name: str, count: int, concurrency: int, call: Request) -> Result:
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < count:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            ok = await call(target.session, index)
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1

    cpu_before = sum(target.api.cpu_times()[:2])
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = sum(target.api.cpu_times()[:2]) - cpu_before
    return Result(name, count, concurrency, elapsed, latencies, errors, cpu)


async def run_load(url: str, key: str, args: argparse.Namespace, pid: int) -> list[Result]:
    headers = {"Authorization": f"Bearer {key}"}
    body = wav_file(1024 * 1024)
    job_ids: list[str] = []

    async def post(session: aiohttp.ClientSession, _index: int) -> bool:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(body), filename="bench.wav", content_type="audio/wav")
        async with session.post(f"{url}/transcribe", data=form, headers=headers) as response:
            if response.status != 202:
                return False
            job_ids.append((await response.json())["job_id"])
            return True

    async def get(session: aiohttp.ClientSession, index: int) -> bool:
        job_id = job_ids[index % len(job_ids)]
        async with session.get(f"{url}/transcribe/{job_id}", headers=headers) as response:
            await response.read()
            return response.status == 200

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        target = Target(session, psutil.Process(pid))
        await drive(target, "warm-up", 20, 4, post)
        posts = await drive(
            target, "POST /transcribe (1 MB)", args.posts, args.post_concurrency, post
        )
        await drive(target, "warm-up", 200, 8, get)
        gets = await drive(target, "GET /transcribe/{id}", args.gets, args.get_concurrency, get)
    return [posts, gets]


async def create_key(settings: Settings) -> str:
    engine = create_engine(settings.effective_database_url)
    try:
        plain, _ = await create_api_key(engine, name="bench", at=utc_now())
    finally:
        await engine.dispose()
    return plain


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async def poll() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if process.poll() is not None:
                    raise RuntimeError("the API process exited; see its log")
                try:
                    async with session.get(f"{url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)
            raise RuntimeError("the API did not become ready")

    asyncio.run(poll())


def print_table(results: list[Result]) -> None:
    print(
        f"| {'case':<26} | requests | conc. | req/s  | p50 ms | p95 ms | p99 ms | errors "
        "| API CPU ms/req |"
    )
    print(
        f"|{'-' * 28}|----------|-------|--------|--------|--------|--------|--------|{'-' * 16}|"
    )
    for r in results:
        print(
            f"| {r.name:<26} | {r.requests:>8} | {r.concurrency:>5} | {r.rate:>6.0f} "
            f"| {r.percentile(50):>6.1f} | {r.percentile(95):>6.1f} | {r.percentile(99):>6.1f} "
            f"| {r.errors:>6} | {r.api_cpu_s / r.requests * 1000:>14.2f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--post-concurrency", type=int, default=8)
    parser.add_argument("--gets", type=int, default=10000)
    parser.add_argument("--get-concurrency", type=int, default=16)
    parser.add_argument(
        "--profile", type=Path, help="run the API under cProfile and write its stats here"
    )
    add_json_option(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="whisperstream-bench-api-") as tmp:
        settings = load_settings(
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            s3_endpoint=f"http://127.0.0.1:{free_port()}",
            stack_postgres_port=free_port(),
            whisperstream_state_dir=Path(tmp),
            database_url=None,
        )
        stack = LocalStack(settings)
        stack.up(volatile=True)
        port = free_port()
        env = {
            **os.environ,
            **stack.urls(),
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "S3_ENDPOINT": settings.s3_endpoint,
            "STACK_POSTGRES_PORT": str(settings.stack_postgres_port),
            "WHISPERSTREAM_STATE_DIR": tmp,
            "API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            # measure the API, not the per-key limiter
            "API_RATE_LIMIT_PER_S": "1000000",
            "API_RATE_LIMIT_BURST": "1000000",
        }
        profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
        log_path = Path(tmp) / "api.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *profile, "-m", "whisperstream.cli.main", "api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            key = asyncio.run(create_key(settings))
            results = asyncio.run(run_load(url, key, args, process.pid))
        finally:
            process.terminate()
            process.wait(20)
            stack.down()
    print(
        f"API on loopback, {os.cpu_count()} CPUs, workers idle; stack and client on the same host"
    )
    print_table(results)
    get = results[1]
    print(
        f"targets: POST >= 100 req/s: {'met' if results[0].rate >= 100 else 'NOT met'}; "
        f"GET >= 1000 req/s with p99 < 50 ms: "
        f"{'met' if get.rate >= 1000 and get.percentile(99) < 50 else 'NOT met'}"
    )
    print(f"median GET latency {statistics.median(get.latencies) * 1000:.2f} ms")
    post = results[0]
    emit(
        args.json,
        [
            Figure("POST /transcribe, 1 MB file", post.rate, "req/s", ">= 100"),
            Figure("POST /transcribe p99 latency", post.percentile(99), "ms"),
            Figure("GET /transcribe/{id}", get.rate, "req/s", ">= 1,000"),
            Figure("GET /transcribe/{id} p50 latency", get.percentile(50), "ms"),
            Figure("GET /transcribe/{id} p99 latency", get.percentile(99), "ms", "< 50"),
            Figure("API CPU per GET", get.api_cpu_s / get.requests * 1000, "ms"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
