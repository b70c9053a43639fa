"""`whisperstream dlq list | show | redrive` against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from db.engine import create_engine
from db.error_queries import list_errors
from db.projection_store import apply_batch
from db.records import ProjectionRecord
from schemas.codec import EventCodec
from schemas.events import DeadLetter, Priority, Source, SourcePosition, TranscriptionRequested
from tests.support.fold_events import request
from tests.support.kafka_read import records_to_end
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


def _dead_letter(
    failed: TranscriptionRequested | None, error_type: str, raw: bytes, offset: int
) -> DeadLetter:
    return DeadLetter(
        event_id=str(uuid.uuid4()),
        job_id=failed.job_id if failed else None,
        occurred_at=datetime.now(UTC),
        error_type=error_type,
        error_message=f"{error_type} happened",
        stack_trace=None,
        retry_count=0,
        source=SourcePosition("transcription.requests.normal", 0, offset),
        original_value=raw,
        request=failed,
    )


def _read_all(settings: Settings, topic: str) -> list[TranscriptionRequested]:
    """Every request in `topic` up to its end now (not "whatever came within a while")."""
    with EventCodec() as codec:
        return [
            codec.decode(value or b"", TranscriptionRequested)
            for _, _, value in records_to_end(settings.kafka_bootstrap_servers, topic)
        ]


def test_redrive_publishes_new_jobs_and_resolves_rows(
    running_stack: RunningStack, fresh_topics: Settings, fresh_database_url: str
) -> None:
    settings = fresh_topics
    marker = uuid.uuid4().hex[:8]
    failed = request(
        uuid.uuid4(), occurred_at=datetime.now(UTC), owner=f"o-{marker}", priority=Priority.HIGH
    )
    with EventCodec() as codec:
        letters = [
            _dead_letter(failed, f"ModelNotInstalled{marker}", codec.encode(failed), 1),
            _dead_letter(None, f"Undecodable{marker}", b"\x00garbage", 2),
        ]
    records = [
        ProjectionRecord(settings.topic_dlq, 0, n, datetime.now(UTC), None, letter)
        for n, letter in enumerate(letters)
    ]

    async def seed() -> None:
        engine = create_engine(fresh_database_url)
        try:
            await apply_batch(engine, "seed", records)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    env = {
        **os.environ,
        **running_stack.env,
        "DATABASE_URL": fresh_database_url,
        "COLUMNS": "250",  # rich wraps tables at 80 columns when not on a terminal
        "TOPIC_REQUESTS_HIGH": settings.topic_requests_high,
        "TOPIC_REQUESTS_NORMAL": settings.topic_requests_normal,
    }

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "whisperstream.cli.main", "dlq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    listed = run("list")
    assert f"ModelNotInstalled{marker}" in listed
    assert f"Undecodable{marker}" in listed

    dry = run("redrive", "--dry-run")
    assert "would redrive" in dry
    assert _read_all(settings, settings.topic_requests_high) == []

    done = run("redrive", "--error-type", f"ModelNotInstalled{marker}")
    assert "redriven" in done
    (redriven,) = _read_all(settings, settings.topic_requests_high)
    assert redriven.job_id != failed.job_id
    assert redriven.correlation_id == failed.job_id
    assert redriven.source is Source.REDRIVE
    assert redriven.attempt == 1
    assert redriven.audio == failed.audio
    assert redriven.owner == failed.owner

    async def rows() -> dict[str, bool]:
        engine = create_engine(fresh_database_url)
        try:
            page = await list_errors(engine)
        finally:
            await engine.dispose()
        return {e.row.error_type: e.resolved for e in page.items}

    assert asyncio.run(rows()) == {
        f"ModelNotInstalled{marker}": True,
        f"Undecodable{marker}": False,
    }
    # the garbage letter holds no request: reported, left unresolved
    rest = run("redrive")
    assert "not redrivable" in rest
    assert len(_read_all(settings, settings.topic_requests_high)) == 1

    error_id = next(
        line.split()[1] for line in listed.splitlines() if f"ModelNotInstalled{marker}" in line
    )
    shown = json.loads(run("show", error_id))
    assert shown["resolved"] is True
    assert shown["error_type"] == f"ModelNotInstalled{marker}"
