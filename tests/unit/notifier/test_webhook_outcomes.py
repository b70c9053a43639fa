"""Which answers are retried, given up on or end a job's callbacks; the schedule."""

from __future__ import annotations

import pytest

from notifier.outcomes import AttemptResult, Outcome, classify, describe, retry_delay
from whisperstream.settings import load_settings


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, Outcome.SUCCEEDED),
        (204, Outcome.SUCCEEDED),
        (408, Outcome.RETRYING),
        (429, Outcome.RETRYING),
        (500, Outcome.RETRYING),
        (503, Outcome.RETRYING),
        (400, Outcome.FAILED),
        (401, Outcome.FAILED),
        (404, Outcome.FAILED),
        (302, Outcome.FAILED),
        (410, Outcome.GONE),
    ],
)
def test_status_codes(code: int, outcome: Outcome) -> None:
    assert classify(AttemptResult(code, 1.0)) is outcome


def test_transport_errors_are_retried_and_refusals_are_not() -> None:
    assert classify(AttemptResult(None, 10_000.0, "timed out")) is Outcome.RETRYING
    refused = AttemptResult(None, 0.0, "refused: 127.0.0.1 is a loopback address", False)
    assert classify(refused) is Outcome.FAILED


def test_a_redirect_is_described_as_not_followed() -> None:
    assert describe(AttemptResult(301, 1.0)) == "HTTP 301: redirects are not followed"
    assert describe(AttemptResult(200, 1.0)) is None


def test_the_default_schedule_and_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_RETRY_SCHEDULE", raising=False)
    schedule = load_settings().webhook_retry_delays_s
    assert schedule == (5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0, 21600.0, 43200.0)
    assert retry_delay(1, schedule) == 5
    assert retry_delay(8, schedule) == 43200
    assert retry_delay(9, schedule) is None


def test_the_schedule_is_configurable_and_checked() -> None:
    assert load_settings(webhook_retry_schedule="200ms, 1s,2m").webhook_retry_delays_s == (
        0.2,
        1.0,
        120.0,
    )
    assert load_settings(webhook_retry_schedule="").webhook_retry_delays_s == ()
    with pytest.raises(Exception, match="WEBHOOK_RETRY_SCHEDULE"):
        load_settings(webhook_retry_schedule="5 parsecs")


def test_the_delivery_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "WEBHOOK_TIMEOUT_S",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        "WEBHOOK_CONCURRENCY",
        "WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.webhook_timeout_s == 10.0
    assert settings.webhook_allow_private_networks is False
    assert settings.webhook_concurrency == 64
    assert settings.webhook_secret is None
