"""A large upload through a real API process: its memory must stay flat."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

from storage.keys import S3Uri
from storage.s3 import ObjectStore
from tests.integration.api.audio_stream import multipart_of, wav_bytes
from tests.integration.api.conftest import ENV_ADMIN_KEY
from tests.support.stack import RunningStack
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UPLOAD_BYTES = 1024 * 1024 * 1024  # the 1 GB
MAX_GROWTH = 50 * 1024 * 1024


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def api_process(
    running_stack: RunningStack, fresh_topics: Settings, tmp_path: Path
) -> Iterator[ApiProcess]:
    port = free_port()
    env = {
        **os.environ,
        **running_stack.env,
        "API_PORT": str(port),
        "WHISPERSTREAM_ADMIN_KEY": ENV_ADMIN_KEY,
        "TOPIC_REQUESTS_NORMAL": fresh_topics.topic_requests_normal,
        "TOPIC_REQUESTS_HIGH": fresh_topics.topic_requests_high,
        "TOPIC_WORKERS": fresh_topics.topic_workers,
        "LOG_LEVEL": "WARNING",
        "MAX_UPLOAD_SIZE_MB": "2048",  # above the 1 GB upload
    }
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "whisperstream.cli.main", "api"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield ApiProcess(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _wait_ready(session: aiohttp.ClientSession, api: ApiProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert api.process.poll() is None, "the API process exited"
        try:
            async with session.get(f"{api.url}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the API did not start")


class PeakRss:
    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_large_upload_keeps_memory_flat(
    api_process: ApiProcess, stack_settings: Settings
) -> None:
    headers = {"X-API-Key": ENV_ADMIN_KEY}
    timeout = aiohttp.ClientTimeout(total=280)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await _wait_ready(session, api_process)
        # warm up: imports, pools and the first multipart upload are not growth
        for _ in range(2):
            async with session.post(
                f"{api_process.url}/transcribe",
                data=multipart_of(wav_bytes(12 * 1024 * 1024)),
                headers=headers,
            ) as response:
                assert response.status == 202, await response.text()
        baseline = psutil.Process(api_process.process.pid).memory_info().rss

        with PeakRss(api_process.process.pid) as rss:
            async with session.post(
                f"{api_process.url}/transcribe",
                data=multipart_of(wav_bytes(UPLOAD_BYTES)),
                headers=headers,
            ) as response:
                assert response.status == 202, await response.text()
                job_id = (await response.json())["job_id"]
        async with session.get(f"{api_process.url}/transcribe/{job_id}", headers=headers) as got:
            job = await got.json()

    growth = rss.peak - baseline
    print(f"baseline {baseline / 2**20:.1f} MiB, peak {rss.peak / 2**20:.1f} MiB")
    assert growth < MAX_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert job["size_bytes"] == UPLOAD_BYTES
    with ObjectStore.from_settings(stack_settings) as store:
        uri = S3Uri.parse(job["audio_uri"])
        assert store.stat(uri).size == UPLOAD_BYTES
        store.delete(uri)
