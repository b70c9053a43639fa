"""Drive `whisperstream up` from a test: start it on free ports, read its terminal, call
its API with the admin key."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from schemas.events import TERMINAL_STATUSES
from tests.support.stack import random_stack_settings, stack_env, stack_state_dir
from whisperstream.stack.ports import free_port

ADMIN_KEY = "e2e-admin-key"
T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.3)


@dataclass
class Up:
    """A running `whisperstream up` and the lines of its terminal."""

    proc: subprocess.Popen[str]
    state_dir: Path
    api_url: str
    env: dict[str, str]
    """The environment `up` was started with: a CLI command run with it reaches the stack."""
    lines: list[str] = field(default_factory=list)

    def read_terminal(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 120, count: int = 1) -> str:
        """The `count`th line that matches `pattern`, once it is there."""
        regex = re.compile(pattern)

        def probe() -> str | None:
            found = [line for line in self.lines if regex.search(line)]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited before {pattern!r}:\n{self.output}")
            return None

        try:
            return wait_until(f"line {pattern!r}", probe, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output}") from None

    def supervisor_state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "supervisor.json").read_text())
        return data

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def submit(self, audio: Path) -> str:
        def accepted() -> str | None:
            with contextlib.suppress(httpx.HTTPError), self.http() as client:
                response = client.post(
                    "/transcribe",
                    files={"file": ("jfk.flac", audio.read_bytes(), "audio/flac")},
                    data={"model": "tiny.en"},
                )
                if response.status_code == 202:
                    job_id: str = response.json()["job_id"]
                    return job_id
            return None

        return wait_until("202 for a submission", accepted, 120)

    def wait_completed(self, job_id: str, timeout: float = 240) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.HTTPError), self.http() as client:
                response = client.get(f"/transcribe/{job_id}")
                if response.status_code == 200 and response.json()["status"] in TERMINAL_STATUSES:
                    body: dict[str, Any] = response.json()
                    return body
            return None

        done = wait_until(f"end of job {job_id}", finished, timeout)
        assert done["status"] == "completed", (done, self.output)
        return done

    def admin_health(self) -> dict[str, Any]:
        with self.http() as client:
            response = client.get("/admin/health")
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        return report


@contextlib.contextmanager
def running_up(*args: str, **extra_env: str) -> Iterator[Up]:
    with stack_state_dir() as state_dir:
        settings = random_stack_settings(state_dir)
        api_port = free_port()
        env = {
            **os.environ,
            **stack_env(settings),
            "API_PORT": str(api_port),
            "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
            **extra_env,
        }
        env.pop("DATABASE_URL")
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisperstream.cli.main", "up", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        up = Up(proc, state_dir, f"http://127.0.0.1:{api_port}", env)
        reader = threading.Thread(target=up.read_terminal, daemon=True)
        reader.start()
        try:
            yield up
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            reader.join(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
