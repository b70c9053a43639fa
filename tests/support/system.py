"""The whole system started the way the README does (`whisperstream up`), for e2e tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from schemas.events import TERMINAL_STATUSES
from tests.support.stack import random_stack_settings, stack_env, stack_state_dir
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port


@dataclass(frozen=True)
class System:
    settings: Settings
    api_url: str
    admin_key: str
    env: dict[str, str]
    model_dir: Path
    log_path: Path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "whisperstream.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def wait_for_job(
        self, job_id: str, statuses: frozenset[str] = TERMINAL_STATUSES, timeout: float = 180
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        with self.http() as client:
            while time.monotonic() < deadline:
                response = client.get(f"/transcribe/{job_id}")
                if response.status_code == 200:
                    last = response.json()
                    if last["status"] in statuses:
                        return last
                time.sleep(0.5)
        raise AssertionError(f"job {job_id} not in {sorted(statuses)} after {timeout}s: {last}")

    @property
    def database_url(self) -> str:
        """The system's Postgres (a psycopg URL), for checks a user could not make over HTTP."""
        return self.settings.effective_database_url

    def create_key(self, name: str) -> UserKey:
        """A new (non-admin) API key made with `whisperstream keys create NAME`."""
        result = self.cli("keys", "create", name)
        assert result.returncode == 0, result.stdout + result.stderr
        found = _KEY_CREATED.search(result.stderr)
        assert found is not None, result.stderr
        # the first line is the key; the webhook signing secret may follow
        return UserKey(key=result.stdout.strip().splitlines()[0], owner=found.group(1))


@dataclass(frozen=True)
class UserKey:
    key: str
    owner: str
    """What the API records as the owner of this key's jobs: the key's id."""


_KEY_CREATED = re.compile(r"created key ([0-9a-f-]{36}) for")


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"whisperstream up exited:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"the API did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def running_system(**extra_env: str) -> Iterator[System]:
    with stack_state_dir() as state_dir:
        settings = random_stack_settings(state_dir)
        api_port = free_port()
        model_dir = state_dir / "models"
        model_dir.mkdir()
        admin_key = "e2e-admin-key"
        env = {
            **os.environ,
            **stack_env(settings),
            "API_PORT": str(api_port),
            "WHISPERSTREAM_ADMIN_KEY": admin_key,
            "WHISPERSTREAM_API_KEY": admin_key,
            "WHISPER_MODEL_DIR": str(model_dir),
            "COLUMNS": "250",
            **extra_env,
        }
        env.pop("DATABASE_URL")
        log_path = state_dir / "up.log"
        log: IO[bytes]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "whisperstream.cli.main", "up", "--volatile"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            api_url = f"http://127.0.0.1:{api_port}"
            try:
                _wait_healthy(api_url, proc, log_path, 180)
                yield System(settings, api_url, admin_key, env, model_dir, log_path)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
