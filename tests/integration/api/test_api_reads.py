from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from schemas.events import CancelRequested, JobStatus
from tests.integration.api.conftest import Api, read_topic
from tests.integration.api.helpers import complete, project, status_event, submit

pytestmark = pytest.mark.integration


async def test_completed_job_shows_its_result_in_every_format(api: Api, jfk_bytes: bytes) -> None:
    job_id = await submit(api, jfk_bytes)
    pending = await api.client.get(f"/transcribe/{job_id}?format=srt", headers=api.auth())
    assert pending.status == 409
    assert "pending" in (await pending.json())["detail"]

    await complete(api, job_id)
    job = await (await api.client.get(f"/transcribe/{job_id}/", headers=api.auth())).json()
    assert job["status"] == "completed"
    assert job["progress"] == 1.0
    assert job["started_at"] is not None
    assert job["completed_at"] is not None
    assert job["result"]["text"].startswith("And so")
    assert job["result"]["word_count"] == 7
    assert job["result"]["duration"] == 11.0

    async def fetch(fmt: str) -> tuple[str, str]:
        response = await api.client.get(f"/transcribe/{job_id}?format={fmt}", headers=api.auth())
        assert response.status == 200, await response.text()
        return response.content_type, await response.text()

    assert (await fetch("text")) == ("text/plain", "And so, my fellow Americans, ask not.\n")
    content_type, srt = await fetch("srt")
    assert content_type == "application/x-subrip"
    assert srt.startswith("1\n00:00:00,000 --> 00:00:03,500\nAnd so, my fellow Americans,\n")
    assert "2\n00:00:03,500 --> 01:01:01,250\nask not.\n" in srt
    _, vtt = await fetch("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.500\n")
    _, tsv = await fetch("tsv")
    assert tsv.splitlines() == [
        "start\tend\ttext",
        "0\t3500\tAnd so, my fellow Americans,",
        "3500\t3661250\task not.",
    ]
    content_type, document = await fetch("json")
    assert content_type == "application/json"
    assert '"segments"' in document

    bad = await api.client.get(f"/transcribe/{job_id}?format=docx", headers=api.auth())
    assert bad.status == 400
    assert "docx" in (await bad.json())["detail"]


async def test_another_keys_job_is_invisible(api: Api, jfk_bytes: bytes) -> None:
    job_id = await submit(api, jfk_bytes)
    other = api.auth(api.other_key)
    assert (await api.client.get(f"/transcribe/{job_id}", headers=other)).status == 404
    assert (await api.client.delete(f"/transcribe/{job_id}", headers=other)).status == 404
    listed = await (await api.client.get("/jobs", headers=other)).json()
    assert listed["items"] == []
    mine = await (await api.client.get("/jobs", headers=api.auth())).json()
    assert [item["job_id"] for item in mine["items"]] == [job_id]


async def test_admins_see_every_owners_jobs(api: Api, jfk_bytes: bytes) -> None:
    mine = await submit(api, jfk_bytes)
    theirs = await submit(api, jfk_bytes, key=api.other_key)
    admin = api.auth(api.admin_key)
    for job_id in (mine, theirs):
        assert (await api.client.get(f"/transcribe/{job_id}", headers=admin)).status == 200
    everything = await (await api.client.get("/jobs", headers=admin)).json()
    assert {item["job_id"] for item in everything["items"]} >= {mine, theirs}
    owner_of_theirs = await (await api.client.get("/jobs", headers=api.auth(api.other_key))).json()
    assert [item["job_id"] for item in owner_of_theirs["items"]] == [theirs]
    response = await api.client.get("/jobs", params={"owner": "someone"}, headers=api.auth())
    assert response.status == 422
    assert "owner" in (await response.json())["detail"]


async def test_cancel(api: Api, jfk_bytes: bytes) -> None:
    job_id = await submit(api, jfk_bytes)
    response = await api.client.delete(f"/transcribe/{job_id}", headers=api.auth())
    assert response.status == 202
    assert (await response.json()) == {
        "job_id": job_id,
        "status": "pending",
        "cancel_requested": True,
    }
    events = read_topic(api.settings, api.settings.topic_control)
    assert [e.job_id for e in events if isinstance(e, CancelRequested)] == [job_id]
    assert len(events) == 1
    job = await (await api.client.get(f"/transcribe/{job_id}", headers=api.auth())).json()
    assert job["cancel_requested_at"] is not None

    done = await submit(api, jfk_bytes)
    await complete(api, done)
    conflict = await api.client.delete(f"/transcribe/{done}/", headers=api.auth())
    assert conflict.status == 409
    assert "completed" in (await conflict.json())["detail"]

    assert (
        await api.client.delete(f"/transcribe/{uuid.uuid4()}", headers=api.auth())
    ).status == 404
    assert (await api.client.delete("/transcribe/not-a-uuid", headers=api.auth())).status == 404


async def test_job_list_filters_orders_and_pages(api: Api, jfk_bytes: bytes) -> None:
    ids = []
    for index in range(5):
        ids.append(
            await submit(
                api, jfk_bytes, priority="high" if index % 2 else "normal", model="tiny.en"
            )
        )
        await asyncio.sleep(0.005)  # distinct created_at (millisecond precision)
    await project(api, api.settings.topic_status, status_event(ids[0], JobStatus.PROCESSING, 0))

    async def page(query: str) -> dict[str, Any]:
        response = await api.client.get(f"/jobs?{query}", headers=api.auth())
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    everything = await page("limit=100")
    assert [i["job_id"] for i in everything["items"]] == ids[::-1]

    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = await page(query)
        seen += [i["job_id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    high = await page("priority=high")
    assert {i["job_id"] for i in high["items"]} == {ids[1], ids[3]}
    processing = await page("status=processing")
    assert [i["job_id"] for i in processing["items"]] == [ids[0]]
    assert (await page("model=base"))["items"] == []
    later = await page("created_after=2999-01-01T00:00:00Z")
    assert later["items"] == []
    earlier = await page("created_before=2999-01-01T00:00:00%2B00:00")
    assert len(earlier["items"]) == 5
    assert (await page("limit=1000"))["limit"] == 100

    for query, field in (
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("created_after=yesterday", "created_after"),
        ("colour=red", "colour"),
    ):
        response = await api.client.get(f"/jobs/?{query}", headers=api.auth())
        assert response.status == 422, query
        assert (await response.json())["errors"][0]["field"] == field
    bad_cursor = await api.client.get("/jobs?cursor=garbage", headers=api.auth())
    assert bad_cursor.status == 400
    assert "cursor" in (await bad_cursor.json())["detail"]
