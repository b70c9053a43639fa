from __future__ import annotations

import asyncio
import time

import pytest

from schemas.codec import EventCodec
from schemas.events import PoolStats, WorkerHeartbeat, utc_now
from tests.integration.api.conftest import Api
from tests.integration.api.helpers import dead_letter, project
from whisperstream.kafka_producer import KafkaProducer

pytestmark = pytest.mark.integration


async def test_admin_health_reports_dependencies_and_heartbeats(api: Api) -> None:
    beat = WorkerHeartbeat(
        worker_id="worker-a",
        host="h",
        pid=42,
        occurred_at=utc_now(),
        engines=["faster-whisper"],
        loaded_models=["tiny.en"],
        pool=PoolStats(hits=3, misses=1, evictions=0, oom_fallbacks=0, loads=1, load_seconds=0.5),
        in_flight=1,
        concurrency=2,
        processed=10,
        failed=1,
    )
    with EventCodec() as codec:
        value = codec.encode(beat)
    async with KafkaProducer.from_settings(api.settings) as producer:
        await producer.send(api.settings.topic_workers, "worker-a", value)

    headers = api.auth(api.admin_key)
    deadline = time.monotonic() + 30
    while True:
        response = await api.client.get("/admin/health", headers=headers)
        assert response.status == 200
        report = await response.json()
        if report["workers"]["live"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert report["status"] == "ok"
    for name in ("kafka", "s3", "postgres"):
        assert report["dependencies"][name]["status"] == "ok"
        assert report["dependencies"][name]["latency_ms"] >= 0
    [worker] = report["workers"]["live"]
    assert worker["worker_id"] == "worker-a"
    assert worker["model_pool"]["hit_rate"] == 0.75
    assert worker["model_pool"]["loaded_models"] == ["tiny.en"]
    assert "lag" in report["projector"]
    # restarts per service are reported only under `whisperstream up`
    assert "supervisor" not in report


async def test_error_log_filter_page_and_resolve(api: Api) -> None:
    await project(
        api,
        api.settings.topic_dlq,
        dead_letter("AudioDecodeError", 1),
        dead_letter("ModelLoadError", 2),
        dead_letter("AudioDecodeError", 3),
    )
    headers = api.auth(api.admin_key)
    everything = await (await api.client.get("/admin/errors", headers=headers)).json()
    assert [e["error_type"] for e in everything["items"]] == [
        "AudioDecodeError",
        "ModelLoadError",
        "AudioDecodeError",
    ]
    decode = await (
        await api.client.get("/admin/errors?error_type=AudioDecodeError&limit=1", headers=headers)
    ).json()
    assert len(decode["items"]) == 1
    assert decode["next_before_id"] is not None
    rest = await (
        await api.client.get(
            f"/admin/errors?error_type=AudioDecodeError&before_id={decode['next_before_id']}",
            headers=headers,
        )
    ).json()
    assert [e["source"]["offset"] for e in rest["items"]] == [1]

    error_id = decode["items"][0]["id"]
    resolved = await api.client.post(f"/admin/errors/{error_id}/resolve", headers=headers)
    assert resolved.status == 200
    assert (
        await api.client.post(f"/admin/errors/{error_id}/resolve/", headers=headers)
    ).status == 200
    done = await (await api.client.get("/admin/errors?resolved=true", headers=headers)).json()
    assert [e["id"] for e in done["items"]] == [error_id]
    assert done["items"][0]["resolved_at"] is not None
    open_ = await (await api.client.get("/admin/errors?resolved=false", headers=headers)).json()
    assert len(open_["items"]) == 2

    assert (await api.client.post("/admin/errors/999999/resolve", headers=headers)).status == 404
    bad = await api.client.get("/admin/errors?resolved=maybe", headers=headers)
    assert bad.status == 422
    assert (await bad.json())["errors"][0]["field"] == "resolved"
    user = await api.client.post(f"/admin/errors/{error_id}/resolve", headers=api.auth())
    assert user.status == 403
