"""Issue 8, end to end: 200 short clips submitted concurrently all complete, each once.

Checked the ways a user and an operator can: `GET /jobs` of the submitting key, the
projection in Postgres (one result row per job, nothing extra), and the status topic
(one `completed` event per job).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.audio import JFK_REFERENCE, cut, duration_s, normalise
from tests.support.system import System, UserKey

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = 200
IN_FLIGHT = 20
# (start, length) in seconds within jfk.flac: 1-3 s pieces from all over the speech
CLIP_SPANS = (
    (0.0, 1.5),
    (0.8, 2.2),
    (1.9, 3.0),
    (3.2, 1.2),
    (3.9, 2.6),
    (5.4, 1.8),
    (6.6, 2.9),
    (7.5, 1.0),
    (8.2, 2.4),
    (9.1, 1.9),
)
FINISH_WITHIN_S = 420
LIST_PAGE = 100


@pytest.fixture(scope="module")
def clips(jfk_flac: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("load-audio")
    made = []
    for index, (start, length) in enumerate(CLIP_SPANS):
        path = cut(jfk_flac, folder / f"clip-{index}.flac", start, length)
        assert duration_s(path) == pytest.approx(length, abs=0.05)
        made.append(path.read_bytes())
    return made


async def submit_all(system: System, key: UserKey, clips: list[bytes]) -> dict[str, int]:
    """Submit JOBS uploads, at most IN_FLIGHT at a time; job id -> clip index."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    headers = {"Authorization": f"Bearer {key.key}"}
    async with httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=60) as client:

        async def one(number: int) -> tuple[str, int]:
            clip = number % len(clips)
            async with limit:
                response = await client.post(
                    "/transcribe",
                    files={"file": (f"load-{number:03d}.flac", clips[clip], "audio/flac")},
                )
            assert response.status_code == 202, response.text
            return response.json()["job_id"], clip

        accepted = await asyncio.gather(*(one(number) for number in range(JOBS)))
    return dict(accepted)


def statuses(client: httpx.Client) -> Counter[str]:
    """How many of this key's jobs are in each status, from every page of `GET /jobs`."""
    counts: Counter[str] = Counter()
    query: dict[str, str | int] = {"limit": LIST_PAGE}
    for _ in range(JOBS // LIST_PAGE + 5):
        response = client.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        counts.update(item["status"] for item in page["items"])
        if page["next_cursor"] is None:
            return counts
        query["cursor"] = page["next_cursor"]
    raise AssertionError("GET /jobs lists more jobs than were submitted")


def listed_jobs(client: httpx.Client) -> dict[str, str]:
    jobs: dict[str, str] = {}
    query: dict[str, str | int] = {"limit": LIST_PAGE}
    for _ in range(JOBS // LIST_PAGE + 5):
        page = client.get("/jobs", params=query).json()
        for item in page["items"]:
            assert item["job_id"] not in jobs, f"{item['job_id']} listed twice"
            jobs[item["job_id"]] = item["status"]
        if page["next_cursor"] is None:
            return jobs
        query["cursor"] = page["next_cursor"]
    raise AssertionError("GET /jobs lists more jobs than were submitted")


def wait_until_all_done(system: System, key: UserKey) -> Counter[str]:
    deadline = time.monotonic() + FINISH_WITHIN_S
    counts: Counter[str] = Counter()
    with system.http(key.key) as client:
        while time.monotonic() < deadline:
            counts = statuses(client)
            assert counts["failed"] == 0, counts
            assert counts["cancelled"] == 0, counts
            if counts["completed"] >= JOBS:
                return counts
            time.sleep(3)
    raise AssertionError(f"not all {JOBS} jobs completed within {FINISH_WITHIN_S}s: {counts}")


def completed_events(system: System, job_ids: set[str]) -> Counter[str]:
    """`completed` status events per job id of ours, read with `whisperstream tail`."""
    tailed = system.cli("tail", "status", "--from-beginning", "--idle-timeout", "5")
    assert tailed.returncode == 0, tailed.stderr
    counts: Counter[str] = Counter()
    for line in tailed.stdout.splitlines():
        record = json.loads(line)
        assert not record.get("undecodable"), record
        event = record["event"]
        if event["job_id"] in job_ids and event["status"] == "completed":
            counts[event["job_id"]] += 1
    return counts


@pytest.mark.timeout(600)
def test_200_concurrent_short_clips_complete_once_each(system: System, clips: list[bytes]) -> None:
    key = system.create_key(f"load-{uuid.uuid4().hex[:8]}")
    submitted = asyncio.run(submit_all(system, key, clips))
    assert len(submitted) == JOBS, "every submission got its own job id"

    counts = wait_until_all_done(system, key)
    assert counts == Counter({"completed": JOBS}), counts
    with system.http(key.key) as client:
        listed = listed_jobs(client)
    assert set(listed) == set(submitted)
    assert set(listed.values()) == {"completed"}

    ids = [uuid.UUID(job_id) for job_id in submitted]
    with psycopg.connect(system.database_url) as conn:
        jobs = conn.execute(
            "select id, status from transcription_jobs where owner = %s", (key.owner,)
        ).fetchall()
        results = conn.execute(
            "select job_id, transcription_text from transcription_results where job_id = any(%s)",
            (ids,),
        ).fetchall()
    assert sorted(str(job_id) for job_id, _ in jobs) == sorted(submitted)
    assert {status for _, status in jobs} == {"completed"}
    result_ids = Counter(str(job_id) for job_id, _ in results)
    assert len(results) == JOBS
    assert set(result_ids) == set(submitted)
    assert max(result_ids.values()) == 1

    # the same clip gives the same words whichever job carried it: nothing got mixed up
    texts: dict[int, set[str]] = defaultdict(set)
    vocabulary = set(normalise(JFK_REFERENCE))
    for job_id, text in results:
        words = normalise(text or "")
        assert words, f"job {job_id} has an empty transcript"
        assert set(words) & vocabulary, (job_id, text)
        texts[submitted[str(job_id)]].add(" ".join(words))
    assert all(len(variants) == 1 for variants in texts.values()), dict(texts)

    completed = completed_events(system, set(submitted))
    assert set(completed) == set(submitted)
    assert max(completed.values()) == 1, completed.most_common(3)
