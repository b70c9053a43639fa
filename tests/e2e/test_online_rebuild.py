"""`whisperstream replay --rebuild` on a system run by `whisperstream up`, with jobs
flowing: nothing is stopped, no read of the API misses a job, and the projector goes on."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.up import Up, running_up, wait_until

pytestmark = pytest.mark.e2e


@dataclass
class JobReads:
    """`GET /jobs` over and over: a job listed once must be listed by every later read,
    and a job once completed must stay completed."""

    up: Up
    count: int = 0
    status: dict[str, str] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with self.up.http() as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.TimeoutException):
                    response = client.get("/jobs", params={"limit": 100})
                    if response.status_code != 200:
                        self.misses.append(f"read {self.count}: {response.status_code}")
                        continue
                    self.check({job["job_id"]: job["status"] for job in response.json()["items"]})
                time.sleep(0.05)

    def check(self, listed: dict[str, str]) -> None:
        self.count += 1
        for job_id, status in self.status.items():
            now = listed.get(job_id)
            if now is None or (status == "completed" and now != "completed"):
                self.misses.append(f"read {self.count}: {job_id} was {status}, now {now}")
        self.status.update(listed)


@contextlib.contextmanager
def in_background(*loops: Any) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=loop.run, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


@dataclass
class Submissions:
    """A job submitted every second or so until stopped."""

    up: Up
    audio: Path
    jobs: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.8):
            self.jobs.append(self.up.submit(self.audio))


def rebuild(up: Up) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", "replay", "--rebuild"],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def listed(up: Up) -> dict[str, dict[str, Any]]:
    with up.http() as client:
        response = client.get("/jobs", params={"limit": 100})
    assert response.status_code == 200, response.text
    return {job["job_id"]: job for job in response.json()["items"]}


@pytest.mark.timeout(600)
def test_rebuild_under_up_with_jobs_flowing(jfk_flac: Path) -> None:
    with running_up("--volatile") as up:
        for ready in (r"api\s+ready on http", r"worker\s+ready: worker", r"projector\s+ready"):
            up.wait_for_line(ready, timeout=240)
        first = up.submit(jfk_flac)
        up.wait_completed(first)
        reads = JobReads(up)
        flow = Submissions(up, jfk_flac)
        with in_background(reads, flow):
            wait_until("jobs flowing", lambda: len(flow.jobs) >= 3 or None, 60)
            before = reads.count
            output = rebuild(up)
            during = reads.count - before
            submitted_before_swap = len(flow.jobs)
            wait_until(
                "a job submitted after the swap",
                lambda: len(flow.jobs) > submitted_before_swap + 1 or None,
                60,
            )
        assert "swapped in" in output, output
        assert during > 3, "no read of the API was taken during the rebuild"
        assert reads.misses == []

        # the projector goes on from the swapped offsets: every job ends, those
        # submitted after the swap included, and is listed with its result
        for job_id in [first, *flow.jobs]:
            assert "ask not" in up.wait_completed(job_id)["result"]["text"].lower()
        settled = listed(up)
        assert set(settled) == {first, *flow.jobs}
        # and what it folded equals a rebuild from the topics
        rebuild(up)
        assert listed(up) == settled
