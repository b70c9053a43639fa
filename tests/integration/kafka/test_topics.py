"""Topics as code against the real broker: create, idempotent re-apply, reported drift."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ops.kafka.offsets import high_watermarks
from ops.kafka.topics import TopicSpec, apply_topics, default_topic_specs
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def test_apply_creates_every_topic_then_changes_nothing(stack_settings: Settings) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.model_copy(
        update={"topic_status": f"status.{suffix}", "topic_dlq": f"dlq.{suffix}"}
    )
    specs = default_topic_specs(settings)
    first = apply_topics(_admin(settings), specs)
    assert {f"status.{suffix}", f"dlq.{suffix}"} <= set(first.created)
    topics = _admin(settings).list_topics(timeout=10).topics
    assert len(topics[f"status.{suffix}"].partitions) == settings.topic_partitions
    assert len(topics[settings.topic_control].partitions) == 1

    second = apply_topics(_admin(settings), specs)
    assert second.created == []
    assert second.differences == []
    assert sorted(second.unchanged) == sorted(spec.name for spec in specs)


def test_apply_reports_but_does_not_change_a_different_topic(stack_settings: Settings) -> None:
    name = f"drift.{uuid.uuid4().hex[:8]}"
    admin = _admin(stack_settings)
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(10)

    report = apply_topics(admin, [TopicSpec(name, partitions=4)])

    assert report.created == []
    assert [(d.topic, d.what, d.wanted, d.actual) for d in report.differences] == [
        (name, "partitions", "4", "2")
    ]
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 2


def test_high_watermarks_come_from_fetch_responses(fresh_topics: Settings) -> None:
    topic = fresh_topics.topic_status
    producer = Producer({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    for i in range(7):
        producer.produce(topic, key=b"k", value=f"v{i}".encode(), partition=1)
    producer.produce(topic, key=b"k", value=b"other", partition=2)
    assert producer.flush(10) == 0
    producer.close()

    ends = high_watermarks(
        fresh_topics.kafka_bootstrap_servers, [(topic, p) for p in range(4)], timeout=15
    )

    assert ends == {(topic, 0): 0, (topic, 1): 7, (topic, 2): 1, (topic, 3): 0}


def test_a_partition_that_gives_no_fetch_response_has_an_unknown_end(
    fresh_topics: Settings,
) -> None:
    topic = fresh_topics.topic_status  # 4 partitions: partition 9 never answers a fetch
    producer = Producer({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    producer.produce(topic, key=b"k", value=b"v", partition=0)
    assert producer.flush(10) == 0
    producer.close()

    ends = high_watermarks(fresh_topics.kafka_bootstrap_servers, [(topic, 0), (topic, 9)], 5)

    assert ends == {(topic, 0): 1, (topic, 9): None}


def test_cli_apply_and_list(running_stack: RunningStack, fresh_topics: Settings) -> None:
    env = {**os.environ, **running_stack.env, "TOPIC_STATUS": fresh_topics.topic_status}
    producer = Producer({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    for _ in range(3):
        producer.produce(fresh_topics.topic_status, key=b"k", value=b"v", partition=0)
    assert producer.flush(10) == 0
    producer.close()

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "whisperstream.cli.main", "topics", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout

    applied = run("apply")
    assert f"unchanged {fresh_topics.topic_status}" in applied
    listed = run("list")
    row = next(line for line in listed.splitlines() if fresh_topics.topic_status in line)
    assert "3 0 0 0" in row
