"""Postgres stopped for 30 s: reads answer 503, submissions go on, the projector catches up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, wait_until

pytestmark = pytest.mark.e2e
OUTAGE_S = 30.0


def _assert_database_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.elapsed.total_seconds() < 10, "the API hung on the missing database"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers.get("Retry-After")
    body: dict[str, Any] = response.json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert body["type"].endswith("/database-unavailable"), body
    assert "database is unavailable" in body["detail"], body
    assert body["instance"] == response.request.url.path


def _database_retries(cluster: Cluster) -> int:
    """How often the projector has logged "database unavailable (attempt n, next try...)"."""
    log = cluster.log_path("projector").read_text(errors="replace")
    return log.count("database unavailable")


@pytest.mark.timeout(300)
def test_postgres_outage(cluster: Cluster, jfk_flac: Path) -> None:
    known = cluster.submit_ok(jfk_flac)
    assert cluster.wait_for_job(known)["status"] == "completed"

    retries_before = _database_retries(cluster)
    cluster.stop_stack_service("postgres")
    stopped_at = time.monotonic()
    accepted: list[str] = []
    with cluster.http() as client:
        _assert_database_problem(client.get(f"/transcribe/{known}"))
        _assert_database_problem(client.get("/jobs"))
        _assert_database_problem(client.get("/admin/errors"))
        # submissions only need S3 and Kafka: the event is the record of the job
        for _ in range(3):
            response = cluster.submit(client, jfk_flac)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "pending"
            accepted.append(response.json()["job_id"])
        # the outage lasts OUTAGE_S; reads keep answering 503 (not hanging, not 500)
        while time.monotonic() - stopped_at < OUTAGE_S:
            _assert_database_problem(client.get(f"/transcribe/{accepted[0]}"))
            time.sleep(2)
    # the projector has had its chance to give up once it has failed to reach Postgres
    wait_until(
        "the projector to retry the database (or to exit)",
        lambda: (
            _database_retries(cluster) > retries_before
            or not cluster.service_alive("projector")
            or None
        ),
        timeout=60,
    )
    assert cluster.service_alive("projector"), cluster.log_tail("projector")

    assert cluster.start_stack_services() == ["postgres"]
    for job_id in accepted:
        done = cluster.wait_for_job(job_id, timeout=120)
        assert done["status"] == "completed", done
    rows = cluster.sql(
        "select count(*) from transcription_jobs where id = any(%s::uuid[]) "
        "and status = 'completed'",
        (accepted,),
    )
    assert rows == [(len(accepted),)]
    assert cluster.service_alive("projector")
