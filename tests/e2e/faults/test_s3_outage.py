"""S3 unreachable: submissions answer 503 and nothing reaches the request topics.

The shared cluster's broker keeps its data in memory; a durable broker would keep it on
this same S3 and go down with it, which is not the fault under test here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster

pytestmark = pytest.mark.e2e


def _assert_storage_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == 503
    assert body["type"].endswith("/storage-unavailable"), body
    assert body["detail"], body


@pytest.mark.timeout(300)
def test_s3_unreachable_publishes_nothing(cluster: Cluster, jfk_flac: Path) -> None:
    topics = cluster.request_topics()
    known = cluster.submit_ok(jfk_flac)
    assert cluster.wait_for_job(known)["status"] == "completed"
    before = cluster.end_offsets(topics)
    jobs_before = cluster.sql("select count(*) from transcription_jobs")

    cluster.stop_stack_service("s3")
    with cluster.http(timeout=120) as client:
        for fields in ({}, {"priority": "high"}):
            _assert_storage_problem(cluster.submit(client, jfk_flac, **fields))
        by_uri = client.post(
            "/transcribe",
            json={"audio_uri": f"s3://{cluster.settings.audio_bucket}/uploads/{known}/jfk.flac"},
        )
        _assert_storage_problem(by_uri)
    assert cluster.end_offsets(topics) == before
    assert cluster.sql("select count(*) from transcription_jobs") == jobs_before

    assert cluster.start_stack_services() == ["s3"]
    after = cluster.submit_ok(jfk_flac)
    assert cluster.wait_for_job(after)["status"] == "completed"
    assert sum(cluster.end_offsets(topics).values()) == sum(before.values()) + 1
