"""Fixtures for the event-contract tests: one codec and sample events of every type."""

from __future__ import annotations

import pytest

from schemas.codec import EventCodec
from schemas.events import Event, TranscriptionRequested
from tests.support.sample_events import full_request, minimal_request, sample_events


@pytest.fixture(scope="session")
def codec() -> EventCodec:
    return EventCodec()


@pytest.fixture(params=sample_events(), ids=lambda e: type(e).__name__)
def sample(request: pytest.FixtureRequest) -> Event:
    event: Event = request.param
    return event


@pytest.fixture
def request_event() -> TranscriptionRequested:
    return full_request()


@pytest.fixture
def minimal_request_event() -> TranscriptionRequested:
    return minimal_request()


@pytest.fixture
def all_samples() -> list[Event]:
    return sample_events()
