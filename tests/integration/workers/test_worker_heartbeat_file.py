"""A worker's readiness signal: a file touched after each heartbeat reaches Kafka."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.workers.harness import wait_for, worker, worker_env
from tests.support.stack import RunningStack
from whisperstream.probe import probe
from whisperstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_worker_touches_its_heartbeat_file_after_each_heartbeat(
    running_stack: RunningStack, fresh_topics: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "worker.heartbeat"
    env = worker_env(running_stack, fresh_topics, WHISPERSTREAM_HEARTBEAT_FILE=str(path))
    with worker(env, tmp_path / "worker.log"):
        wait_for("the heartbeat file", path.exists)
        assert probe(["file", str(path), "30"]) is None
        os.utime(path, (0, 0))
        wait_for("the next heartbeat", lambda: path.stat().st_mtime > 0)
