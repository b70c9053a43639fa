"""/admin/health on the running system: real workers' heartbeats and the projector's lag."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.system import System

pytestmark = pytest.mark.e2e


def test_admin_health_shows_workers_pool_stats_and_projector_lag(
    system: System, jfk_flac: Path
) -> None:
    with system.http() as client:
        accepted = client.post(
            "/transcribe", files={"file": ("jfk.flac", jfk_flac.read_bytes(), "audio/flac")}
        )
        assert accepted.status_code == 202, accepted.text
        assert system.wait_for_job(accepted.json()["job_id"])["status"] == "completed"
        report: dict[str, Any] = {}
        deadline = time.monotonic() + 60  # heartbeats come every 10 s
        while time.monotonic() < deadline:
            report = client.get("/admin/health").json()
            live = report["workers"]["live"]
            if live and live[0]["processed"] >= 1:
                break
            time.sleep(1)
    assert report["status"] == "ok", report
    assert {d["status"] for d in report["dependencies"].values()} == {"ok"}
    (worker, *_) = report["workers"]["live"]
    assert worker["processed"] >= 1
    pool = worker["model_pool"]
    assert pool["loads"] >= 1
    assert pool["hits"] + pool["misses"] >= 1
    assert "tiny.en" in " ".join(pool["loaded_models"])
    lag = report["projector"]["lag"]
    assert lag is not None
    assert lag["partitions"], report["projector"]
    assert lag["total_lag"] >= 0
