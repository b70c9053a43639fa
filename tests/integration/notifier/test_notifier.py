"""The notifier against the real broker and Postgres, a real receiver on loopback, and
the real ``standardwebhooks`` library verifying what arrives.

The requests are produced straight to Kafka, as an upstream system would, and folded in
by a real projector; one notifier process serves the module (retries shortened by
settings: WEBHOOK_RETRY_SCHEDULE=300ms,600ms, WEBHOOK_TIMEOUT_S=1.5).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import aiohttp
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from db.lag_queries import read_projector_lag
from db.webhook_secrets import new_webhook_secret, rotate_webhook_secret
from notifier.store import DeliveryRow, RedeliverRefusedError, job_deliveries, redeliver
from ops.kafka.offsets import high_watermarks
from schemas.events import JobStatus, JobStatusChanged, utc_now
from tests.integration.notifier.conftest import FALLBACK_SECRET, Webhooks
from tests.integration.notifier.events import ended, upstream_request
from tests.integration.notifier.receiver import Received, Receiver
from tests.integration.projector.helpers import eventually
from tests.support.kafka_read import committed_offset

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _submit(
    hooks: Webhooks,
    path: str,
    *,
    owner: str | None = "key",
    status_first: bool = False,
    status: JobStatus = JobStatus.COMPLETED,
    partition: int | None = None,
    url: str | None = None,
) -> tuple[str, JobStatusChanged]:
    """An upstream job with a callback to ``path`` that has ended: its id and end event
    (produced to ``partition`` when given)."""
    job_id = str(uuid.uuid4())
    key_owner = hooks.key_id if owner == "key" else owner
    request = upstream_request(job_id, url or hooks.receiver.to(path), key_owner)
    end = ended(job_id, status)
    if status_first:
        _send_status(hooks, end, partition)
    hooks.events.send(hooks.settings.topic_requests_normal, request)
    hooks.events.flush()
    if not status_first:
        _send_status(hooks, end, partition)
    return job_id, end


def _send_status(hooks: Webhooks, event: JobStatusChanged, partition: int | None) -> None:
    hooks.events.send(hooks.settings.topic_status, event, partition=partition)
    hooks.events.flush()


async def _rows(hooks: Webhooks, job_id: str) -> list[DeliveryRow]:
    return await job_deliveries(hooks.engine, uuid.UUID(job_id))


async def _settled_rows(hooks: Webhooks, job_id: str, within_s: float = 90) -> list[DeliveryRow]:
    """The job's attempts once none is pending any more."""
    rows: list[DeliveryRow] = []

    async def settled() -> bool:
        nonlocal rows
        rows = await _rows(hooks, job_id)
        return bool(rows) and all(row.status != "pending" for row in rows)

    await eventually(settled, within_s=within_s, what=f"the deliveries of job {job_id}")
    return rows


async def _received(hooks: Webhooks, path: str, count: int) -> list[Received]:
    async def arrived() -> bool:
        return len(hooks.receiver.of(path)) >= count

    await eventually(
        arrived, within_s=90, what=f"{count} requests to {path}:\n{hooks.notifier.log()}"
    )
    return hooks.receiver.of(path)


async def test_a_completed_job_is_called_back_signed_even_when_its_status_comes_first(
    webhooks: Webhooks,
) -> None:
    # the status event is on Kafka before the request: the notifier waits for the projector
    job_id, end = _submit(webhooks, "/ok/first", status_first=True)
    event_id = end.event_id
    (got,) = await _received(webhooks, "/ok/first", 1)
    assert got.webhook_id == event_id
    assert got.headers["content-type"] == "application/json"
    body = Webhook(webhooks.secret).verify(got.body, got.headers)
    assert body["type"] == "transcription.completed"
    assert body["job_id"] == job_id
    assert body["status"] == "completed"
    assert body["result"]["text"] == "And so, my fellow Americans"
    assert body["result"]["model"] == "tiny.en"
    assert body["links"]["job"].endswith(f"/transcribe/{job_id}")
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(got.body, got.headers)

    # the notifier records its lag on the status topic, as the projector does its own
    async def lag_recorded() -> bool:
        rows = await read_projector_lag(webhooks.engine, webhooks.settings.notifier_group_id)
        return any(r.topic == webhooks.settings.topic_status for r in rows)

    await eventually(lag_recorded, within_s=30, what="the notifier's lag rows")
    (row,) = await _settled_rows(webhooks, job_id)
    assert (row.status, row.status_code, row.attempt, row.event_id) == (
        "succeeded",
        200,
        1,
        event_id,
    )
    assert row.latency_ms is not None


async def test_a_failed_upstream_job_without_a_key_is_signed_with_the_fallback_secret(
    webhooks: Webhooks,
) -> None:
    _job_id, _ = _submit(webhooks, "/ok/upstream", owner="billing-system", status=JobStatus.FAILED)
    (got,) = await _received(webhooks, "/ok/upstream", 1)
    body = Webhook(FALLBACK_SECRET).verify(got.body, got.headers)
    assert body["type"] == "transcription.failed"
    assert body["error"] == {"type": "AudioDecodeError", "message": "not audio"}


async def test_500_twice_then_200_is_three_attempts_with_one_webhook_id_and_one_success(
    webhooks: Webhooks,
) -> None:
    job_id, end = _submit(webhooks, "/flaky/2")
    event_id = end.event_id
    got = await _received(webhooks, "/flaky/2", 3)
    assert {r.webhook_id for r in got} == {event_id}
    rows = await _settled_rows(webhooks, job_id)
    assert [(r.attempt, r.status, r.status_code) for r in rows] == [
        (1, "retrying", 500),
        (2, "retrying", 500),
        (3, "succeeded", 200),
    ]
    # the schedule: each retry was due 300 ms, then 600 ms, after the attempt before
    for row, delay in zip(rows, (0.3, 0.6), strict=False):
        assert row.attempted_at is not None
        assert row.next_attempt_at == row.attempted_at + timedelta(seconds=delay)
    assert rows[1].attempted_at is not None
    assert rows[0].next_attempt_at is not None
    assert rows[1].attempted_at >= rows[0].next_attempt_at
    # Prometheus: attempts by outcome and their latency, since this notifier started
    async with aiohttp.ClientSession() as session, session.get(webhooks.metrics_url) as page:
        metrics = await page.text()
    retried = _sample(metrics, 'whisperstream_webhook_attempts_total{outcome="retrying"}')
    assert retried >= 2
    assert _sample(metrics, 'whisperstream_webhook_attempts_total{outcome="succeeded"}') >= 1
    assert _sample(metrics, "whisperstream_webhook_latency_seconds_count") >= 3


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the metrics:\n{metrics}")


async def test_400_gets_one_attempt_and_410_stops_the_job(webhooks: Webhooks) -> None:
    bad_job, _ = _submit(webhooks, "/status/400")
    gone_job, _ = _submit(webhooks, "/status/410")
    (bad,) = await _settled_rows(webhooks, bad_job)
    assert (bad.status, bad.status_code, bad.error) == ("failed", 400, "HTTP 400")
    (gone,) = await _settled_rows(webhooks, gone_job)
    assert (gone.status, gone.status_code) == ("gone", 410)
    assert len(webhooks.receiver.of("/status/400")) == 1
    assert len(webhooks.receiver.of("/status/410")) == 1
    # an operator's redelivery is the one way past a 410
    assert await redeliver(webhooks.engine, uuid.UUID(gone_job), utc_now()) == 1
    await _received(webhooks, "/status/410", 2)
    rows = await _settled_rows(webhooks, gone_job)
    assert [(r.attempt, r.status_code) for r in rows] == [(1, 410), (2, 410)]


async def test_a_receiver_that_never_answers_is_retried_on_schedule_then_given_up(
    webhooks: Webhooks,
) -> None:
    job_id, _ = _submit(webhooks, "/hang")
    rows = await _settled_rows(webhooks, job_id)
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]
    assert all(r.error is not None and r.error.startswith("timed out") for r in rows)
    assert rows[-1].error is not None
    assert "gave up after 3 attempts" in rows[-1].error
    assert len(webhooks.receiver.of("/hang")) == 3
    with pytest.raises(RedeliverRefusedError):
        await redeliver(webhooks.engine, uuid.uuid4(), utc_now())


async def test_a_slow_receiver_holds_its_share_of_slots_and_not_the_others(
    webhooks: Webhooks,
) -> None:
    # a second receiver (another host:port) that never answers in time
    slow = Receiver()
    await slow.start()
    try:
        slow_jobs = []
        for _ in range(3):
            job_id, _ = _submit(webhooks, "/ok/unused", url=slow.to("/hang"))
            slow_jobs.append(job_id)

        # its two slots (WEBHOOK_CONCURRENCY_PER_HOST) taken, another host is served
        async def slow_share_taken() -> bool:
            return slow.in_flight == 2

        await eventually(slow_share_taken, within_s=60, what="two slow attempts in flight")
        _submit(webhooks, "/ok/fast")
        await _received(webhooks, "/ok/fast", 1)
        # ... while the slow ones were still being tried
        still = [r.status for job_id in slow_jobs for r in await _rows(webhooks, job_id)]
        assert "pending" in still, still
        for job_id in slow_jobs:
            await _settled_rows(webhooks, job_id)
        # three jobs, three attempts each, never more than two at once
        assert len(slow.of("/hang")) == 9
        assert slow.max_in_flight == 2
    finally:
        await slow.stop()


async def test_a_redirect_is_not_followed(webhooks: Webhooks) -> None:
    job_id, _ = _submit(webhooks, "/redirect")
    (row,) = await _settled_rows(webhooks, job_id)
    assert (row.status, row.status_code) == ("failed", 302)
    assert webhooks.receiver.of("/ok") == []


async def test_a_rotation_sends_both_signatures(webhooks: Webhooks) -> None:
    old = webhooks.secret
    ((_, new),) = await rotate_webhook_secret(
        webhooks.engine, webhooks.key_name, at=utc_now(), grace=timedelta(hours=1)
    )
    _submit(webhooks, "/ok/rotated")
    (got,) = await _received(webhooks, "/ok/rotated", 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(got.body, got.headers)
    Webhook(old).verify(got.body, got.headers)
    webhooks.secret = new


async def test_a_redelivered_status_event_is_not_sent_again(webhooks: Webhooks) -> None:
    job_id, end = _submit(webhooks, "/ok/once", partition=0)
    await _received(webhooks, "/ok/once", 1)
    rows_before = await _settled_rows(webhooks, job_id)
    # the same status event again, as Kafka redelivers one after a crash before the commit
    _send_status(webhooks, end, 0)
    # a later job's end on the same partition: once it is called back, the duplicate
    # (before it in the partition) has been consumed
    _submit(webhooks, "/ok/after-duplicate", partition=0)
    await _received(webhooks, "/ok/after-duplicate", 1)
    assert len(webhooks.receiver.of("/ok/once")) == 1
    assert await _rows(webhooks, job_id) == rows_before


async def test_kill_9_between_send_and_record_gives_no_second_success(
    webhooks: Webhooks,
) -> None:
    # the receiver kills the notifier once it has the request, before answering
    job_id, end = _submit(webhooks, "/kill", partition=1)
    event_id = end.event_id
    await _received(webhooks, "/kill", 1)
    assert webhooks.notifier.wait_killed() == -9
    assert all(r.status == "pending" for r in await _rows(webhooks, job_id))
    webhooks.receiver.kill_pid = webhooks.notifier.start()
    # its lease runs out (timeout + 5 s): the unrecorded attempt is sent again, once
    got = await _received(webhooks, "/kill", 2)
    assert {r.webhook_id for r in got} == {event_id}
    rows = await _settled_rows(webhooks, job_id)
    assert [(r.attempt, r.status) for r in rows] == [(1, "succeeded")]
    # more redeliveries (of the status event, or by an operator) send nothing
    with pytest.raises(RedeliverRefusedError):
        await redeliver(webhooks.engine, uuid.UUID(job_id), utc_now())
    _send_status(webhooks, end, 1)
    _submit(webhooks, "/ok/after-kill", partition=1)
    await _received(webhooks, "/ok/after-kill", 1)
    assert len(webhooks.receiver.of("/kill")) == 2
    assert json.loads(got[0].body) == json.loads(got[1].body)


def _committed(hooks: Webhooks, partition: int) -> int:
    """The notifier group's committed offset on one status partition."""
    settings = hooks.settings
    return committed_offset(
        settings.kafka_bootstrap_servers,
        settings.notifier_group_id,
        settings.topic_status,
        partition,
    )


async def test_an_end_waiting_for_its_request_survives_a_kill_9_of_the_notifier(
    webhooks: Webhooks,
) -> None:
    # a job's end is on Kafka, its request not yet: the notifier holds it in memory
    waiting_at = _end_of(webhooks, 2)
    job_id = str(uuid.uuid4())
    _send_status(webhooks, ended(job_id), 2)
    # a later job's end on the same partition is called back: the notifier read past both
    _submit(webhooks, "/ok/behind-the-waiting", partition=2)
    await _received(webhooks, "/ok/behind-the-waiting", 1)
    # commits go out one after another: once a job ended after that is committed on
    # partition 3, every earlier commit is done, and partition 2's stayed at the waiting end
    marker_at = _end_of(webhooks, 3)
    _submit(webhooks, "/ok/marker", partition=3)

    async def marker_committed() -> bool:
        return _committed(webhooks, 3) == marker_at + 1

    await eventually(marker_committed, within_s=60, what="the commit past the marker")
    assert _committed(webhooks, 2) == waiting_at

    webhooks.notifier.kill()
    assert webhooks.notifier.wait_killed() == -9
    webhooks.receiver.kill_pid = webhooks.notifier.start()
    # the request arrives after the restart: the new notifier read the end again
    request = upstream_request(job_id, webhooks.receiver.to("/ok/waited"), webhooks.key_id)
    webhooks.events.send(webhooks.settings.topic_requests_normal, request)
    webhooks.events.flush()
    (got,) = await _received(webhooks, "/ok/waited", 1)
    assert Webhook(webhooks.secret).verify(got.body, got.headers)["job_id"] == job_id


def _end_of(hooks: Webhooks, partition: int) -> int:
    """The offset the next record on a status partition will get."""
    topic = hooks.settings.topic_status
    ends = high_watermarks(hooks.settings.kafka_bootstrap_servers, [(topic, partition)])
    end = ends[(topic, partition)]
    assert end is not None, f"no end offset of {topic}[{partition}]"
    return end
