"""`whisperstream backfill` against the real stack: events in Kafka, no duplicates on re-run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db.engine import create_engine
from db.projection_store import apply_batch
from db.records import ProjectionRecord
from schemas.codec import EventCodec
from schemas.events import Priority, Source, TranscriptionRequested
from storage.keys import S3Uri
from storage.s3 import ObjectStore
from tests.support.kafka_read import records_to_end
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration
Found = list[tuple[int, int, TranscriptionRequested]]


def _requests(settings: Settings, topic: str) -> Found:
    """Every request in `topic` up to its end now (not "whatever came within a while")."""
    with EventCodec() as codec:
        return [
            (partition, offset, codec.decode(value or b"", TranscriptionRequested))
            for partition, offset, value in records_to_end(settings.kafka_bootstrap_servers, topic)
        ]


def _project(
    database_url: str, topic: str, found: list[tuple[int, int, TranscriptionRequested]]
) -> None:
    records = [
        ProjectionRecord(topic, part, offset, datetime.now(UTC), e.job_id.encode(), e)
        for part, offset, e in found
    ]

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            await apply_batch(engine, f"test-{uuid.uuid4().hex}", records)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_backfill_twice_publishes_each_row_once(
    running_stack: RunningStack, fresh_topics: Settings, jfk_flac: Path, tmp_path: Path
) -> None:
    settings = fresh_topics
    owner = f"backfill-{uuid.uuid4().hex[:6]}"
    (tmp_path / "jfk.flac").write_bytes(jfk_flac.read_bytes())
    with ObjectStore.from_settings(settings) as store:
        store.put_bytes(S3Uri(settings.audio_bucket, f"{owner}/in-s3.flac"), jfk_flac.read_bytes())
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "audio,priority,model,owner\n"
        f"jfk.flac,high,tiny.en,{owner}\n"
        f"s3://{settings.audio_bucket}/{owner}/in-s3.flac,,base,{owner}\n"
    )
    env = {
        **os.environ,
        **running_stack.env,
        "TOPIC_REQUESTS_HIGH": settings.topic_requests_high,
        "TOPIC_REQUESTS_NORMAL": settings.topic_requests_normal,
    }

    def run(*extra: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "whisperstream.cli.main", "backfill", str(manifest), *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "dry run: 2 would be published" in run("--dry-run")
    assert _requests(settings, settings.topic_requests_high) == []

    assert "published 2" in run("--rate", "20")
    high = _requests(settings, settings.topic_requests_high)
    normal = _requests(settings, settings.topic_requests_normal)
    assert len(high) == 1
    assert len(normal) == 1
    local_event, s3_event = high[0][2], normal[0][2]
    assert local_event.priority is Priority.HIGH
    assert local_event.source is Source.BACKFILL
    assert local_event.audio.uri == f"s3://audio/uploads/{local_event.job_id}/jfk.flac"
    assert s3_event.audio.uri == f"s3://{settings.audio_bucket}/{owner}/in-s3.flac"
    assert s3_event.audio.sha256 == local_event.audio.sha256
    assert s3_event.model == "base"
    with ObjectStore.from_settings(settings) as store:
        assert store.exists(S3Uri.parse(local_event.audio.uri))

    # the projector's view: once the jobs are known, a second run publishes nothing
    _project(running_stack.settings.effective_database_url, settings.topic_requests_high, high)
    _project(running_stack.settings.effective_database_url, settings.topic_requests_normal, normal)
    second = run()
    assert "published 0, skipped 2" in second
    assert len(_requests(settings, settings.topic_requests_high)) == 1
    assert len(_requests(settings, settings.topic_requests_normal)) == 1
