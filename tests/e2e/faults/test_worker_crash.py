"""`kill -9` of the worker in the middle of a job: after a worker is back, it completes once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.events import JobStatus, JobStatusChanged
from tests.support.cluster import Cluster, wait_until

pytestmark = pytest.mark.e2e
REFERENCE = "ask not what your country can do for you"


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())


def _status_events(cluster: Cluster, job_id: str) -> list[JobStatusChanged]:
    return [
        event
        for event in cluster.read_events(cluster.settings.topic_status)
        if isinstance(event, JobStatusChanged) and event.job_id == job_id
    ]


def _wait_until_projected(cluster: Cluster, topic: str) -> None:
    """Wait until the projector has stored offsets up to the current end of `topic`: every
    event in it so far is folded into what the API reads."""
    ends = {partition: end for (_, partition), end in cluster.end_offsets([topic]).items()}

    def caught_up() -> bool | None:
        rows = cluster.sql(
            "select partition, next_offset from projector_offsets "
            "where consumer_group = %s and topic = %s",
            (cluster.settings.projector_group_id, topic),
        )
        stored = dict(rows)
        return all(stored.get(p, 0) >= end for p, end in ends.items()) or None

    wait_until(f"the projector to fold {topic} up to {ends}", caught_up, timeout=60)


def test_worker_killed_mid_job_completes_exactly_once(cluster: Cluster, long_speech: Path) -> None:
    job_id = cluster.submit_ok(long_speech)
    cluster.wait_for_job(job_id, frozenset({"processing"}), timeout=120)
    assert cluster.kill_service("worker") == -9

    # no worker runs: once the projector has folded everything, the job is still unfinished
    _wait_until_projected(cluster, cluster.settings.topic_status)
    with cluster.http() as client:
        stalled = cluster.job(client, job_id)
    assert stalled is not None
    assert stalled["status"] == "processing", f"the kill came too late: {stalled}"
    assert not any(e.status is JobStatus.COMPLETED for e in _status_events(cluster, job_id))

    cluster.start_service("worker")
    done = cluster.wait_for_job(job_id, timeout=240)
    assert done["status"] == "completed", done
    assert REFERENCE in _words(done["result"]["text"])

    rows = cluster.sql(
        "select status from transcription_jobs where id = %s", (job_id,)
    ) + cluster.sql("select count(*) from transcription_results where job_id = %s", (job_id,))
    assert rows == [("completed",), (1,)]
    # transcribed to the end once: one completed event in the topic, not one per delivery
    events = _status_events(cluster, job_id)
    completed = [e for e in events if e.status is JobStatus.COMPLETED]
    assert len(completed) == 1, completed
    assert any(e.status is JobStatus.PROCESSING for e in events)
