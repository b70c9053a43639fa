"""Input that can never be processed: it ends somewhere a person sees it, and work goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.events import DeadLetter
from tests.support.cluster import Cluster, wait_until
from tests.support.fault_audio import corrupt_flac, garbage_bytes

pytestmark = pytest.mark.e2e


def _error_rows(cluster: Cluster) -> list[dict[str, Any]]:
    with cluster.http() as client:
        response = client.get("/admin/errors", params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _dead_letters(cluster: Cluster) -> list[DeadLetter]:
    events = cluster.read_events(cluster.settings.topic_dlq)
    return [event for event in events if isinstance(event, DeadLetter)]


def test_corrupt_audio_fails_with_a_readable_error(
    cluster: Cluster, jfk_flac: Path, tmp_path: Path
) -> None:
    corrupt = corrupt_flac(jfk_flac, tmp_path / "corrupt.flac")
    job_id = cluster.submit_ok(corrupt)  # the FLAC header passes the API's sniffing

    failed = cluster.wait_for_job(job_id, timeout=120)
    assert failed["status"] == "failed", failed
    error = failed["error"]
    assert error["type"] == "AudioUndecodableError", error
    message: str = error["message"]
    assert "undecodable" in message, message
    assert message.isprintable(), message
    assert len(message) < 2000, message
    assert failed["result"] is None

    rows = wait_until(
        "the error_logs row of the failed job",
        lambda: [row for row in _error_rows(cluster) if row["job_id"] == job_id] or None,
        timeout=60,
    )
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["error_type"] == "AudioUndecodableError"
    assert row["error_message"] == message
    assert row["resolved"] is False
    assert row["source"]["topic"] in cluster.request_topics()
    assert cluster.sql("select count(*) from error_logs where job_id = %s", (job_id,)) == [(1,)]


def test_garbage_on_a_request_topic_is_dead_lettered_and_work_goes_on(
    cluster: Cluster, jfk_flac: Path
) -> None:
    topic = cluster.settings.topic_requests_normal
    garbage = garbage_bytes()
    partition, offset = cluster.produce_raw(topic, b"not-a-job", garbage, partition=0)

    def dead_letter() -> DeadLetter | None:
        for dead in _dead_letters(cluster):
            source = dead.source
            if (source.topic, source.partition, source.offset) == (topic, partition, offset):
                return dead
        return None

    dead = wait_until("a dead letter for the garbage record", dead_letter, timeout=60)
    assert dead.original_value == garbage
    assert dead.request is None
    assert dead.error_message

    row = wait_until(
        "the garbage record in /admin/errors",
        lambda: next(
            (
                r
                for r in _error_rows(cluster)
                if r["source"] == {"topic": topic, "partition": partition, "offset": offset}
            ),
            None,
        ),
        timeout=60,
    )
    assert row["error_type"] == dead.error_type
    assert row["resolved"] is False

    # the consumer moved past the garbage: a job behind it in the same partition completes
    behind = cluster.produce_request(jfk_flac, partition=partition)
    assert cluster.wait_for_job(behind)["status"] == "completed"
    # and the next job over HTTP completes too
    assert cluster.wait_for_job(cluster.submit_ok(jfk_flac))["status"] == "completed"
