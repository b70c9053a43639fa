"""The whole system as `whisperstream up` runs it: priority latency and peak memory.

Starts `whisperstream up --volatile` with one worker slot (WORKER_CONCURRENCY=1), submits
a backlog of short normal jobs, then one high job, and measures how long the high job
waited for a slot against how long the backlog waited. Meanwhile it samples the
resident memory of every process (API, worker, projector, Tansu, SeaweedFS, Postgres)
and reports each one's peak. Run: `python -m bench.bench_system [--backlog 30]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.report import Figure, add_json_option, emit
from tests.support.audio import JFK_FLAC
from whisperstream.stack.ports import free_port

ADMIN_KEY = "bench-admin-key"


def service_processes(up: psutil.Process, state_dir: Path) -> dict[str, psutil.Process]:
    """`whisperstream up`'s services by name: api, worker, projector (and any other
    service it runs), tansu, seaweedfs, postgres."""
    found: dict[str, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for child in up.children():
            cmdline = child.cmdline()
            if cmdline and cmdline[-1] in ("api", "worker", "projector", "notifier"):
                found[cmdline[-1]] = child
    stack_file = state_dir / "stack.json"
    if stack_file.exists():
        with contextlib.suppress(ValueError, OSError, psutil.Error):
            for name, proc in json.loads(stack_file.read_text())["processes"].items():
                found[{"s3": "seaweedfs", "broker": "tansu"}.get(name, name)] = psutil.Process(
                    proc["pid"]
                )
    return found


class MemorySampler(threading.Thread):
    """Peak RSS per service name, sampled every 200 ms."""

    def __init__(self, up_pid: int, state_dir: Path) -> None:
        super().__init__(daemon=True)
        self._up = psutil.Process(up_pid)
        self._state_dir = state_dir
        self.peaks: dict[str, float] = defaultdict(float)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.2):
            for name, proc in service_processes(self._up, self._state_dir).items():
                with contextlib.suppress(psutil.Error):
                    # a service's memory includes its children (Postgres backends)
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                    self.peaks[name] = max(self.peaks[name], rss / 2**20)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def clip(directory: Path, seconds: float) -> Path:
    target = directory / f"clip-{seconds:.0f}s.wav"
    subprocess.run(
        [
            shutil.which("ffmpeg") or "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(JFK_FLAC),
            "-t",
            str(seconds),
            str(target),
        ],
        check=True,
    )
    return target


def submit(client: httpx.Client, audio: Path, priority: str) -> str:
    response = client.post(
        "/transcribe",
        data={"priority": priority, "model": "tiny.en"},
        files={"file": (audio.name, audio.read_bytes(), "audio/wav")},
    )
    response.raise_for_status()
    return str(response.json()["job_id"])


def wait_all(client: httpx.Client, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(job_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(job_ids) - len(done)} jobs unfinished after {timeout}s")
        for job_id in job_ids:
            if job_id not in done:
                job = client.get(f"/transcribe/{job_id}").json()
                if job["status"] in ("completed", "failed", "cancelled"):
                    done[job_id] = job
        time.sleep(0.5)
    return [done[j] for j in job_ids]


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=30)
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whisperstream-bench-system-") as tmp:
        state = Path(tmp)
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "STACK_POSTGRES_PORT": str(free_port()),
            "WHISPERSTREAM_STATE_DIR": str(state / "state"),
            "API_PORT": str(port),
            "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
            "WORKER_CONCURRENCY": "1",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DATABASE_URL", None)
        audio = clip(state, args.clip_seconds)
        with (state / "up.log").open("wb") as log:
            up = subprocess.Popen(
                [sys.executable, "-m", "whisperstream.cli.main", "up", "--volatile"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sampler = MemorySampler(up.pid, state / "state")
        sampler.start()
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline or up.poll() is not None:
                    raise RuntimeError((state / "up.log").read_text()[-3000:])
                time.sleep(0.3)
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                # warm-up: the first job loads the model and joins the consumer group
                wait_all(client, [submit(client, audio, "normal")], 180)
                normals = [submit(client, audio, "normal") for _ in range(args.backlog)]
                high = submit(client, audio, "high")
                jobs = wait_all(client, [*normals, high], 600)
        finally:
            sampler.stop()
            up.send_signal(signal.SIGTERM)
            up.wait(120)
    by_id = {job["job_id"]: job for job in jobs}
    high_job = by_id[high]
    high_wait = seconds_between(high_job["created_at"], high_job["started_at"])
    normal_waits = sorted(
        seconds_between(by_id[j]["created_at"], by_id[j]["started_at"]) for j in normals
    )
    after_high = sum(1 for j in normals if by_id[j]["started_at"] > high_job["started_at"])
    processing = [by_id[j]["result"]["processing_ms"] / 1000 for j in normals]
    print(f"backlog of {args.backlog} normal jobs ({args.clip_seconds:.0f} s clips), 1 slot")
    print(
        f"high job waited {high_wait:.2f} s for a slot; {after_high} normal jobs started after it"
    )
    print(
        f"normal jobs waited {normal_waits[0]:.1f}..{normal_waits[-1]:.1f} s "
        f"(median {normal_waits[len(normal_waits) // 2]:.1f} s); "
        f"one job takes {sorted(processing)[len(processing) // 2]:.2f} s to process"
    )
    print("peak resident memory per service (MiB, with child processes):")
    for name, peak in sorted(sampler.peaks.items()):
        print(f"  {name:<10} {peak:8.0f}")
    emit(
        args.json,
        [
            Figure("high job's wait for a slot behind the backlog", high_wait, "s"),
            Figure("normal jobs started after the high one", float(after_high), "jobs"),
            Figure("slowest normal job's wait", normal_waits[-1], "s"),
            *(
                Figure(f"peak memory, {name}", peak, "MiB")
                for name, peak in sorted(sampler.peaks.items())
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
