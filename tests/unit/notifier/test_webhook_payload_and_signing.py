"""The callback body and its Standard Webhooks headers, verified by the real library."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from db.webhook_secrets import new_webhook_secret
from notifier.payload import callback_body, is_notified
from notifier.signing import webhook_headers
from schemas.events import JobError, JobStatus, JobStatusChanged
from tests.support.sample_events import sample_events


def _completed() -> JobStatusChanged:
    event = next(
        e
        for e in sample_events()
        if isinstance(e, JobStatusChanged) and e.status is JobStatus.COMPLETED
    )
    return dataclasses.replace(event, error=None)


def test_a_completed_body_has_the_summary_and_links() -> None:
    event = _completed()
    body = json.loads(callback_body(event, "https://api.example/"))
    assert body["type"] == "transcription.completed"
    assert body["job_id"] == event.job_id
    assert body["status"] == "completed"
    assert body["occurred_at"].endswith("Z")
    assert event.result is not None
    assert body["result"]["text"] == event.result.text
    assert body["result"]["model"] == "tiny.en"
    assert body["result"]["language"] == "en"
    assert body["result"]["duration_s"] == 11.0
    assert body["error"] is None
    assert body["links"] == {
        "job": f"https://api.example/transcribe/{event.job_id}",
        "result": f"https://api.example/transcribe/{event.job_id}?format=json",
    }


def test_a_failed_body_has_the_error() -> None:
    event = dataclasses.replace(
        _completed(),
        status=JobStatus.FAILED,
        result=None,
        error=JobError("AudioDecodeError", "not audio", retryable=False),
    )
    body = json.loads(callback_body(event, "http://127.0.0.1:8000"))
    assert body["type"] == "transcription.failed"
    assert body["error"] == {"type": "AudioDecodeError", "message": "not audio"}
    assert body["result"] is None


def test_only_terminal_statuses_are_notified() -> None:
    notified = {
        e.status for e in sample_events() if isinstance(e, JobStatusChanged) and is_notified(e)
    }
    assert notified == {JobStatus.COMPLETED, JobStatus.FAILED}


def test_headers_verify_with_the_secret_and_not_with_another() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    body = callback_body(_completed(), "http://api")
    headers = webhook_headers("evt-1", datetime.now(UTC), body, [secret])
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["job_id"] == _completed().job_id
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("completed", "cancelled"), headers)


def test_a_rotation_signs_with_both_secrets() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    body = callback_body(_completed(), "http://api")
    headers = webhook_headers("evt-2", datetime.now(UTC), body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
