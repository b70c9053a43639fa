"""Shared steps of the API tests: submit a job, complete it as a worker would."""

from __future__ import annotations

import io
import uuid
from typing import Any

import aiohttp

from db.projection_store import apply_batch
from db.records import ProjectionRecord
from schemas.events import (
    DeadLetter,
    Event,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    ResultSummary,
    SourcePosition,
    new_event_id,
    utc_now,
)
from storage.keys import result_uri
from tests.integration.api.conftest import Api

RESULT_DOCUMENT: dict[str, Any] = {
    "language": "en",
    "text": "And so, my fellow Americans, ask not.",
    "segments": [
        {"start": 0.0, "end": 3.5, "text": " And so, my fellow Americans,"},
        {"start": 3.5, "end": 3661.25, "text": " ask not."},
    ],
}


def form(content: bytes, filename: str = "jfk.flac", **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    data.add_field("file", io.BytesIO(content), filename=filename, content_type="audio/flac")
    return data


async def submit(api: Api, content: bytes, key: str | None = None, **fields: str) -> str:
    response = await api.client.post(
        "/transcribe", data=form(content, **fields), headers=api.auth(key)
    )
    assert response.status == 202, await response.text()
    job_id: str = (await response.json())["job_id"]
    return job_id


_offsets: dict[str, int] = {}


async def project(api: Api, topic: str, *events: Event) -> None:
    """Fold events into Postgres as the projector would (no projector runs in these tests)."""
    records = []
    for event in events:
        offset = _offsets.get(topic, 0)
        _offsets[topic] = offset + 1
        records.append(
            ProjectionRecord(
                topic=topic,
                partition=0,
                offset=offset,
                timestamp=utc_now(),
                key=getattr(event, "job_id", "").encode(),
                payload=event,
            )
        )
    await apply_batch(api.engine, "api-tests", records)


def status_event(
    job_id: str, status: JobStatus, seq: int, result_uri_text: str | None = None
) -> JobStatusChanged:
    result = None
    timing = None
    if result_uri_text is not None:
        result = ResultSummary(
            text=RESULT_DOCUMENT["text"],
            language="en",
            duration_s=11.0,
            word_count=7,
            confidence=0.9,
            segment_count=2,
            result_uri=result_uri_text,
        )
        timing = JobTiming(queued_ms=5, processing_ms=800, real_time_factor=0.07)
    return JobStatusChanged(
        event_id=new_event_id(),
        job_id=job_id,
        occurred_at=utc_now(),
        attempt=1,
        seq=seq,
        status=status,
        progress=1.0 if status is JobStatus.COMPLETED else 0.5,
        worker_id="w1",
        engine="faster-whisper",
        model="tiny.en",
        error=None,
        result=result,
        timing=timing,
    )


async def complete(api: Api, job_id: str, document: dict[str, Any] | None = None) -> None:
    uri = result_uri(api.settings.results_bucket, job_id)
    api.store.put_json(uri, document if document is not None else RESULT_DOCUMENT)
    await project(
        api,
        api.settings.topic_status,
        status_event(job_id, JobStatus.PROCESSING, 0),
        status_event(job_id, JobStatus.COMPLETED, 1, str(uri)),
    )


def dead_letter(error_type: str, offset: int, job_id: str | None = None) -> DeadLetter:
    return DeadLetter(
        event_id=new_event_id(),
        job_id=job_id or str(uuid.uuid4()),
        occurred_at=utc_now(),
        error_type=error_type,
        error_message=f"{error_type} happened",
        stack_trace="Traceback ...",
        retry_count=3,
        source=SourcePosition(topic="transcription.requests.normal", partition=0, offset=offset),
        original_value=b"raw",
        request=None,
    )
