"""Issue 14, live job events over SSE on the running system, and the OpenAI endpoint's
cancel on disconnect (it needs a job long enough to leave in the middle of).

The system decodes window by window (WHISPER_BATCH_SIZE=1) so that a job reports
progress and stops at a cancel between segments, keeps no recent events in memory
(API_EVENTS_REPLAY_EVENTS=0, so every resume reads Kafka; tests/integration/api covers
the in-memory path) and sends a keep-alive comment every second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from schemas.codec import EventCodec
from schemas.events import JobStatusChanged
from tests.support.audio import JFK_FLAC, JFK_REFERENCE, repeat, word_error_rate
from tests.support.kafka_read import records_to_end
from tests.support.sse import SseEvent, SseStream, completed_job, ended_job
from tests.support.system import System, UserKey, running_system

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def events_system() -> Iterator[System]:
    with running_system(
        WHISPER_BATCH_SIZE="1", API_EVENTS_REPLAY_EVENTS="0", API_EVENTS_KEEPALIVE_S="1"
    ) as running:
        yield running


@dataclass(frozen=True)
class FollowedJob:
    job_id: str
    owner: UserKey
    other: UserKey
    owner_stream: list[SseEvent]
    """The owner's /jobs/events, opened before the job was submitted."""
    job_stream: list[SseEvent]
    """/transcribe/{id}/events, opened right after the submit, read to its end."""
    other_stream: list[SseEvent]
    """Another key's /jobs/events over the same time, up to its own job's completion."""
    other_job_id: str


def _submit(system: System, key: str, path: Path = JFK_FLAC) -> str:
    with system.http(key) as client:
        accepted = client.post(
            "/transcribe", files={"file": (path.name, path.read_bytes(), "audio/flac")}
        )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["job_id"])


def _topic_events(system: System, job_id: str) -> list[JobStatusChanged]:
    codec = EventCodec(None)
    try:
        records = records_to_end(
            system.settings.kafka_bootstrap_servers, system.settings.topic_status
        )
        events = [codec.decode(value or b"", JobStatusChanged) for _, _, value in records]
    finally:
        codec.close()
    return [e for e in events if e.job_id == job_id]


def _facts(events: list[SseEvent]) -> list[tuple[str, float, int | None]]:
    return [(e.data["status"], e.data["progress"], e.data["seq"]) for e in events]


@pytest.fixture(scope="module")
def followed(events_system: System) -> FollowedJob:
    system = events_system
    owner = system.create_key("events-owner")
    other = system.create_key("events-other")
    url = system.api_url
    with (
        SseStream(url, "/jobs/events", owner.key) as owner_stream,
        SseStream(url, "/jobs/events", other.key) as other_stream,
    ):
        job_id = _submit(system, owner.key)
        with SseStream(url, f"/transcribe/{job_id}/events", owner.key) as job_stream:
            owned = owner_stream.until(completed_job(job_id))
            own_job = job_stream.rest()
        # The other key's stream is live: its own job's events arrive, the first job's never.
        other_job_id = _submit(system, other.key)
        others = other_stream.until(completed_job(other_job_id))
    return FollowedJob(job_id, owner, other, owned, own_job, others, other_job_id)


def test_a_jobs_stream_delivers_every_status_and_progress_event_then_completion(
    events_system: System, followed: FollowedJob
) -> None:
    events = [e for e in followed.owner_stream if e.data["job_id"] == followed.job_id]
    truth = _topic_events(events_system, followed.job_id)
    # exactly what the status topic holds for the job: nothing lost, nothing repeated
    assert _facts(events) == [(e.status.value, e.progress, e.seq) for e in truth]
    names = [e.event for e in events]
    assert names[0] == "status", names
    assert events[0].data["status"] == "processing", names
    progress = [e for e in events if e.event == "progress"]
    assert progress, f"no progress event before completion: {names}"
    assert all(0 < e.data["progress"] < 1 for e in progress)
    assert events.index(progress[0]) < len(events) - 1
    assert events[-1].data["status"] == "completed"
    assert events[-1].data["result"]["text"].startswith("And so")
    assert all(e.id for e in events)


def test_a_job_stream_starts_with_its_state_and_ends_after_its_terminal_event(
    events_system: System, followed: FollowedJob
) -> None:
    state, *after = followed.job_stream
    assert state.event == "state"
    assert state.data["job_id"] == followed.job_id
    assert state.data["status"] in {"pending", "processing"}
    truth = [
        (e.status.value, e.progress, e.seq) for e in _topic_events(events_system, followed.job_id)
    ]
    # what follows the state is the tail of the job's events, ending with its completion
    assert after, "no event after the state"
    assert _facts(after) == truth[len(truth) - len(after) :]
    assert after[-1].data["status"] == "completed"


def test_resuming_with_last_event_id_gives_exactly_the_events_after_it(
    events_system: System, followed: FollowedJob
) -> None:
    system, job_id = events_system, followed.job_id
    events = [e for e in followed.owner_stream if e.data["job_id"] == job_id]
    for index, seen in enumerate(events[:-1]):
        with SseStream(system.api_url, "/jobs/events", followed.owner.key, seen.id) as resumed:
            again = resumed.until(completed_job(job_id))
        assert _facts(again) == _facts(events[index + 1 :]), f"resumed after event {index}"
        assert [e.id for e in again] == [e.id for e in events[index + 1 :]]

    stream = followed.job_stream
    for index, seen in enumerate(stream[:-1]):
        path = f"/transcribe/{job_id}/events"
        with SseStream(system.api_url, path, followed.owner.key, seen.id) as resumed:
            again = resumed.rest()
        assert _facts(again) == _facts(stream[index + 1 :]), f"resumed after event {index}"
    # after the terminal event there is nothing more: 204 tells an EventSource to stop
    with system.http(followed.owner.key) as client:
        done = client.get(
            f"/transcribe/{job_id}/events", headers={"Last-Event-ID": stream[-1].id or ""}
        )
        assert done.status_code == 204, done.text
        bad = client.get(f"/transcribe/{job_id}/events", headers={"Last-Event-ID": "nonsense"})
        assert bad.status_code == 422, bad.text


def test_another_key_can_neither_follow_the_job_nor_see_its_events(
    events_system: System, followed: FollowedJob
) -> None:
    seen = {e.data["job_id"] for e in followed.other_stream}
    assert followed.other_job_id in seen
    assert followed.job_id not in seen
    with events_system.http(followed.other.key) as client:
        refused = client.get(f"/transcribe/{followed.job_id}/events")
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        owner_filter = client.get("/jobs/events", params={"owner": followed.owner.owner})
        assert owner_filter.status_code == 422, owner_filter.text
    with httpx.Client(base_url=events_system.api_url) as anonymous:
        assert anonymous.get(f"/transcribe/{followed.job_id}/events").status_code == 401


def test_an_admin_follows_one_owner_with_the_owner_parameter(
    events_system: System, followed: FollowedJob
) -> None:
    # Resumed from the first job's first event, the replay holds both jobs' events;
    # with ?owner= only the other key's job comes through.
    first = next(e for e in followed.owner_stream if e.data["job_id"] == followed.job_id)
    path = f"/jobs/events?owner={followed.other.owner}"
    with SseStream(events_system.api_url, path, events_system.admin_key, first.id) as admin:
        events = admin.until(completed_job(followed.other_job_id))
    assert {e.data["job_id"] for e in events} == {followed.other_job_id}
    assert _facts(events) == _facts(
        [e for e in followed.other_stream if e.data["job_id"] == followed.other_job_id]
    )


def test_an_idle_stream_gets_keepalive_comments(events_system: System) -> None:
    quiet = events_system.create_key("events-quiet")
    with SseStream(events_system.api_url, "/jobs/events", quiet.key) as stream:
        assert stream.commented.wait(30), "no keep-alive comment"
    assert stream.events == []


def _long_audio(tmp_path: Path) -> Path:
    return repeat(JFK_FLAC, tmp_path / "jfk-x12.flac", 12)


def test_an_openai_client_that_disconnects_cancels_its_job(
    events_system: System, tmp_path: Path
) -> None:
    system = events_system
    caller = system.create_key("openai-leaver")
    audio = _long_audio(tmp_path)

    async def leave_mid_way() -> None:
        client = openai.AsyncOpenAI(
            base_url=f"{system.api_url}/v1", api_key=caller.key, max_retries=0
        )
        with SseStream(system.api_url, "/jobs/events", caller.key) as stream:
            request = asyncio.create_task(
                client.audio.transcriptions.create(file=audio, model="whisper-1")
            )
            started = await asyncio.to_thread(
                stream.until, lambda e: e.data["status"] == "processing"
            )
            request.cancel()  # the SDK's connection closes mid-request
            with contextlib.suppress(asyncio.CancelledError):
                await request
            job_id = started[-1].data["job_id"]
            ended = await asyncio.to_thread(stream.until, ended_job(job_id))
        await client.close()
        assert ended[-1].data["status"] == "cancelled", ended[-1].data

    asyncio.run(leave_mid_way())


def _events_route_requests(system: System) -> float:
    with httpx.Client(base_url=system.api_url) as client:
        text = client.get("/metrics").text
    marker = 'route="/transcribe/{job_id}/events",status="200"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("whisperstream_api_requests_total") and marker in line
    )


def test_submit_wait_follows_the_event_stream(events_system: System, tmp_path: Path) -> None:
    audio = tmp_path / "jfk.flac"
    audio.write_bytes(JFK_FLAC.read_bytes())
    before = _events_route_requests(events_system)
    result = events_system.cli(
        "submit", str(audio), "--wait", "--format", "txt", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed" in result.stdout
    assert word_error_rate(JFK_REFERENCE, (tmp_path / "jfk.txt").read_text()) <= 0.05
    assert _events_route_requests(events_system) > before
