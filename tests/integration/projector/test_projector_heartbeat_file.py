"""The projector's readiness signal: a file touched after each poll of its batch loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.projector.helpers import StartProjector, eventually, projector_config
from whisperstream.heartbeat_file import HeartbeatFile
from whisperstream.probe import probe
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_polling_projector_keeps_its_heartbeat_file_fresh(
    fresh_topics: Settings, engine: AsyncEngine, start_projector: StartProjector, tmp_path: Path
) -> None:
    path = tmp_path / "projector.heartbeat"
    running = await start_projector(
        projector_config(fresh_topics), engine, heartbeat=HeartbeatFile(path)
    )

    async def touched() -> bool:
        return path.exists()

    await eventually(touched, what="the heartbeat file")
    assert probe(["file", str(path), "30"]) is None
    os.utime(path, (0, 0))  # make it stale: an idle but polling projector touches it again

    async def touched_again() -> bool:
        return path.stat().st_mtime > 0

    await eventually(touched_again, what="the heartbeat file touched again")
    await running.stop()
