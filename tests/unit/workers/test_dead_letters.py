"""One dead letter for an undecodable record, whichever reader met it and however often."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Message

from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import DeadLetter, Event, SourcePosition
from stream_workers.config import WorkerTuning
from stream_workers.dead_letters import dead_letter_event_id, undecodable_dead_letter
from stream_workers.kafka_io import CancelRegistry, ControlReader, KafkaPublisher
from stream_workers.service import WorkerService
from whisperstream.settings import load_settings

NO_BROKER = "127.0.0.1:1"  # nothing is sent: the publisher below keeps what it is given
GARBAGE = b"\x00\x01 not an event"


class KeepingPublisher(KafkaPublisher):
    def __init__(self, codec: EventCodec) -> None:
        super().__init__(NO_BROKER, codec, client_id="test")
        self.codec = codec
        self.sent: list[tuple[str, str, Event]] = []

    async def publish(self, topic: str, key: str, event: Event) -> None:
        self.sent.append((topic, key, event))

    def produce(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, self.codec.decode(value, DeadLetter)))


@pytest.fixture
def codec() -> Iterator[EventCodec]:
    with EventCodec() as codec:
        yield codec


def _error() -> UndecodableEvent:
    return UndecodableEvent("no magic byte", GARBAGE)


def test_the_event_id_is_the_source_position_and_nothing_else() -> None:
    position = SourcePosition("requests", 2, 41)
    first = undecodable_dead_letter(position, GARBAGE, b"job", _error(), names_job=True)
    again = undecodable_dead_letter(position, b"other", None, _error(), names_job=False)
    assert first.event.event_id == again.event.event_id == dead_letter_event_id(position)
    # pinned: the rule must not change, or redelivered copies stop matching older ones
    assert dead_letter_event_id(position) == "46c0a4b0-8e45-5a2f-98c2-2ac141200e12"
    others = {
        dead_letter_event_id(SourcePosition("requests", 2, 42)),
        dead_letter_event_id(SourcePosition("requests", 3, 41)),
        dead_letter_event_id(SourcePosition("control", 2, 41)),
    }
    assert len(others | {dead_letter_event_id(position)}) == 4


def test_the_dead_letter_keeps_the_record_and_names_its_job_only_when_asked() -> None:
    position = SourcePosition("requests", 0, 7)
    record = undecodable_dead_letter(position, GARBAGE, b"job-7", _error(), names_job=True)
    assert (record.key, record.event.job_id) == ("job-7", "job-7")
    assert record.event.source == position
    assert record.event.original_value == GARBAGE
    assert record.event.error_type == "UndecodableEvent"
    assert record.event.error_message == str(_error())
    assert record.event.request is None
    unkeyed = undecodable_dead_letter(position, GARBAGE, None, _error(), names_job=True)
    assert (unkeyed.key, unkeyed.event.job_id) == (dead_letter_event_id(position), None)
    cancel = undecodable_dead_letter(position, GARBAGE, b"job-7", _error(), names_job=False)
    assert (cancel.key, cancel.event.job_id) == ("job-7", None)


async def test_the_request_path_dead_letters_by_the_rule(codec: EventCodec) -> None:
    settings = load_settings()
    service = WorkerService(settings, WorkerTuning())
    service.codec = codec
    publisher = service.publisher = KeepingPublisher(codec)
    position = SourcePosition(settings.topic_requests_normal, 1, 5)
    acks: list[None] = []

    async def ack() -> None:
        acks.append(None)

    for _ in range(2):  # a redelivered poison record
        await service.admit(GARBAGE, b"job-5", position, ack)

    assert len(acks) == 2
    expected = undecodable_dead_letter(position, GARBAGE, b"job-5", _error(), names_job=True)
    assert [(topic, key) for topic, key, _ in publisher.sent] == [(settings.topic_dlq, "job-5")] * 2
    for _, _, event in publisher.sent:
        assert isinstance(event, DeadLetter)
        assert event.event_id == expected.event.event_id
        assert event.job_id == "job-5"


def test_the_control_path_dead_letters_by_the_rule(codec: EventCodec) -> None:
    publisher = KeepingPublisher(codec)
    reader = ControlReader(
        NO_BROKER,
        "control",
        codec=codec,
        registry=CancelRegistry(),
        publisher=publisher,
        dlq_topic="dlq",
    )
    try:
        message = Message(topic="control", partition=0, offset=9, key=b"job-9", value=GARBAGE)
        for _ in range(2):  # every worker reads every control record
            reader._handle(message)
    finally:
        reader.close()

    position = SourcePosition("control", 0, 9)
    expected = undecodable_dead_letter(position, GARBAGE, b"job-9", _error(), names_job=False)
    assert [(topic, key) for topic, key, _ in publisher.sent] == [("dlq", "job-9")] * 2
    for _, _, event in publisher.sent:
        assert isinstance(event, DeadLetter)
        assert event.event_id == expected.event.event_id
        assert event.job_id is None  # an unreadable cancel is not the job's error
