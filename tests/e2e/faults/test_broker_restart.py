"""The broker stopped and started again in the middle of a run of jobs.

Durable mode: the broker keeps its log on the local S3, so a restart keeps every topic.
Each test stops the broker while the worker is busy with a backlog and submissions keep
arriving; those may be refused (503) while the broker is away, but every job that got
its 202 must end completed, and the API must take new jobs once the broker is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import SERVICES, Cluster, running_cluster, wait_until
from tests.support.fault_audio import looped_speech

pytestmark = pytest.mark.e2e
BACKLOG = 8
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def durable_cluster(jfk_flac: Path) -> Iterator[Cluster]:
    with running_cluster(volatile=False) as cluster:
        done = cluster.wait_for_job(cluster.submit_ok(jfk_flac), timeout=240)
        assert done["status"] == "completed", done
        yield cluster


@pytest.fixture
def cluster(durable_cluster: Cluster) -> Iterator[Cluster]:
    durable_cluster.restore()
    yield durable_cluster
    # a clean slate for the next test: the broker back, fresh service processes
    durable_cluster.restore()
    for name in SERVICES:
        durable_cluster.restart_service(name)
    durable_cluster.wait_api_ready()


@pytest.fixture(scope="module")
def half_minute(jfk_flac: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return looped_speech(jfk_flac, tmp_path_factory.mktemp("broker") / "half-minute.flac", 30)


@dataclass
class Outage:
    accepted: list[str] = field(default_factory=list)
    refused: int = 0


def _assert_kafka_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == 503
    assert body["type"].endswith("/kafka-unavailable"), body


def _restart_broker_mid_run(cluster: Cluster, backlog_clip: Path, clip: Path) -> Outage:
    """A backlog in progress, the broker away for OUTAGE_S with submissions going on."""
    outage = Outage([cluster.submit_ok(backlog_clip) for _ in range(BACKLOG)])
    cluster.wait_for_job(outage.accepted[0], frozenset({"processing", "completed"}), 120)
    cluster.stop_stack_service("broker")
    stopped_at = time.monotonic()
    with cluster.http(timeout=60) as client:
        while time.monotonic() - stopped_at < OUTAGE_S:
            response = cluster.submit(client, clip)
            if response.status_code == 202:
                outage.accepted.append(response.json()["job_id"])
            else:
                _assert_kafka_problem(response)
                outage.refused += 1
            time.sleep(1)
    assert cluster.start_stack_services() == ["broker"]
    return outage


def _assert_all_completed(cluster: Cluster, job_ids: list[str]) -> None:
    for job_id in job_ids:
        done = cluster.wait_for_job(job_id, timeout=180)
        assert done["status"] == "completed", (job_id, done["status"], done["error"])
    rows = cluster.sql(
        "select count(*) from transcription_results where job_id = any(%s::uuid[])",
        (job_ids,),
    )
    assert rows == [(len(job_ids),)]


@pytest.mark.timeout(420)
def test_no_accepted_job_is_lost(cluster: Cluster, jfk_flac: Path, half_minute: Path) -> None:
    outage = _restart_broker_mid_run(cluster, half_minute, jfk_flac)
    assert outage.refused > 0, "the broker outage refused no submission: was it down?"
    _assert_all_completed(cluster, outage.accepted)
    for name in SERVICES:
        assert cluster.service_alive(name), cluster.log_tail(name)


@pytest.mark.timeout(420)
def test_api_takes_jobs_again_after_the_restart(
    cluster: Cluster, jfk_flac: Path, half_minute: Path
) -> None:
    outage = _restart_broker_mid_run(cluster, half_minute, jfk_flac)
    last: list[str] = []

    def accepted_again() -> str | None:
        with cluster.http() as client:
            response = cluster.submit(client, jfk_flac)
        if response.status_code == 202:
            job_id: str = response.json()["job_id"]
            return job_id
        last[:] = [response.text]
        return None

    try:
        first = wait_until("a 202 once the broker is back", accepted_again, 60, 2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last answer: {last}") from None
    # not a lucky one: the API keeps accepting
    later = [first, *(cluster.submit_ok(jfk_flac) for _ in range(3))]
    _assert_all_completed(cluster, outage.accepted + later)
