"""Projector pieces without services: transient errors, offsets parsing, decoding, lag."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import IntegrityError, OperationalError

from db.errors import InvalidOffsetsError
from db.lag_queries import PartitionLagRow, lag_report
from db.projector.decoding import EPOCH, to_record
from db.projector.lag import LagMetrics, PartitionLag, measure_lag
from db.projector.replay import parse_offsets
from db.projector.retry import is_transient
from db.projector.service import describe_partitions, next_offsets
from db.records import ProjectionRecord, Undecodable
from schemas.codec import EventCodec
from tests.support.fold_events import at, status
from tests.support.kafka_fakes import FakeConsumer, FakeMessage


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (OperationalError("select 1", {}, _PgError("57P03")), True),  # cannot connect now
        (OperationalError("select 1", {}, _PgError("08006")), True),  # connection failure
        (OperationalError("select 1", {}, _PgError("40P01")), True),  # deadlock
        (IntegrityError("insert", {}, _PgError("23505")), False),  # unique violation
        (ValueError("a bug"), False),
    ],
)
def test_only_errors_of_an_absent_or_busy_database_are_transient(
    error: BaseException, transient: bool
) -> None:
    assert is_transient(error) is transient


def test_an_invalidated_connection_is_transient() -> None:
    error = OperationalError("select 1", {}, Exception("gone"), connection_invalidated=True)
    assert is_transient(error)


PARTITIONS = [("t.status", 0), ("t.status", 1), ("t.dlq", 0)]


def test_parse_offsets_earliest_names_every_partition() -> None:
    assert parse_offsets("earliest", PARTITIONS) == dict.fromkeys(PARTITIONS, 0)


def test_parse_offsets_reads_topic_partition_offset_lists() -> None:
    assert parse_offsets("t.status:1=42, t.dlq:0=7", PARTITIONS) == {
        ("t.status", 1): 42,
        ("t.dlq", 0): 7,
    }


@pytest.mark.parametrize("spec", ["", "t.status=4", "t.status:x=1", "t.status:9=1", "nope:0=1"])
def test_parse_offsets_rejects_what_names_no_projected_partition(spec: str) -> None:
    with pytest.raises(InvalidOffsetsError):
        parse_offsets(spec, PARTITIONS)


def _record(topic: str, partition: int, offset: int) -> ProjectionRecord:
    return ProjectionRecord(topic, partition, offset, at(0), None, Undecodable(None, "x", "y"))


def test_next_offsets_is_one_past_the_highest_offset_per_partition() -> None:
    records = [_record("a", 0, 5), _record("a", 0, 3), _record("a", 1, 0), _record("b", 0, 9)]
    assert next_offsets(records) == {("a", 0): 6, ("a", 1): 1, ("b", 0): 10}


def test_the_assignment_is_logged_as_topics_with_their_partitions() -> None:
    held = [("t.status", 2), ("t.dlq", 1), ("t.status", 0)]
    assert describe_partitions(held) == "t.dlq[1] t.status[0,2]"


def test_a_message_decodes_into_a_record_with_its_kafka_time() -> None:
    event = status(uuid.uuid4(), occurred_at=at(1))
    with EventCodec() as codec:
        record = to_record(FakeMessage(codec.encode(event)), codec)
    assert record.payload == event
    assert (record.topic, record.partition, record.offset) == ("t.status", 2, 17)
    assert record.timestamp == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", [b"\xc3\x01garbage", b"{oops", b"", None])
def test_a_value_that_does_not_decode_is_kept_as_undecodable(value: bytes | None) -> None:
    with EventCodec() as codec:
        record = to_record(FakeMessage(value, ts=(TIMESTAMP_NOT_AVAILABLE, -1)), codec)
    assert isinstance(record.payload, Undecodable)
    assert record.payload.raw == value
    assert record.timestamp == EPOCH


def test_lag_comes_from_cached_watermarks_and_skips_unknown_partitions() -> None:
    consumer = FakeConsumer(
        positions={("s", 0): 10, ("s", 1): -1001, ("s", 2): 4},
        highs={("s", 0): 25, ("s", 1): 9, ("s", 2): -1001},
        cached_calls=[],
    )
    lags = measure_lag(consumer)
    assert lags == [PartitionLag("s", 0, 10, 25)]
    assert lags[0].lag == 15
    assert set(consumer.cached_calls) == {True}


def test_lag_metrics_are_exported_per_partition() -> None:
    registry = CollectorRegistry()
    metrics = LagMetrics(registry)
    metrics.observe([PartitionLag("s", 3, 10, 12)])
    metrics.applied(5)
    text = generate_latest(registry).decode()
    assert 'whisperstream_projector_lag{partition="3",topic="s"} 2.0' in text
    assert "whisperstream_projector_events_applied 5.0" in text


def test_lag_report_sums_partitions() -> None:
    rows: Sequence[PartitionLagRow] = [
        PartitionLagRow("s", 0, 5, 9, 4, at(1)),
        PartitionLagRow("s", 1, 3, 3, 0, at(2)),
    ]
    report = lag_report(list(rows))
    assert report["total_lag"] == 4
    assert report["oldest_update"] == at(1).isoformat()
    assert [p["lag"] for p in report["partitions"]] == [4, 0]


def test_lag_report_without_measured_partitions_has_unknown_total_lag() -> None:
    # before its first fetch response the projector has measured nothing: not "no lag"
    assert lag_report([]) == {"total_lag": None, "oldest_update": None, "partitions": []}
