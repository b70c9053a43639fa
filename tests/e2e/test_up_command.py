"""`whisperstream up` as the README runs it: /health answers, SIGTERM stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.stack import random_stack_settings, stack_env, stack_state_dir
from whisperstream.stack.ports import free_port

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
        return response.status, response.read()


def _wait_for_health(url: str, proc: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "whisperstream up exited early"
        try:
            status, body = _get(url)
        except OSError:
            time.sleep(0.3)
            continue
        assert status == 200
        data: dict[str, object] = json.loads(body)
        return data
    raise AssertionError(f"{url} did not answer within {timeout}s")


def test_up_serves_health_and_stops_everything_on_sigterm() -> None:
    with stack_state_dir() as state_dir:
        settings = random_stack_settings(state_dir)
        api_port = free_port()
        env = {**os.environ, **stack_env(settings), "API_PORT": str(api_port)}
        env.pop("DATABASE_URL")
        env["WHISPERSTREAM_ADMIN_KEY"] = "e2e-admin-key"
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisperstream.cli.main", "up", "--volatile"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            health = _wait_for_health(f"http://127.0.0.1:{api_port}/health", proc, 180)
            assert health["status"] == "ok"
            state = json.loads((Path(state_dir) / "stack.json").read_text())
            stack_pids = [int(p["pid"]) for p in state["processes"].values()]
            service_pids = [c.pid for c in psutil.Process(proc.pid).children()]
            assert len(stack_pids) == 3
            assert service_pids, "no service process was started"
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, output
        assert "admin API key: e2e-admin-key" in output
        assert "stopped" in output
        for pid in stack_pids + service_pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
