"""`whisperstream tail` decodes every event type and marks what it cannot decode."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from schemas.codec import EventCodec
from schemas.plain import to_plain
from tests.support.sample_events import sample_events
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration
GARBAGE = b"\x00\xffnot an event"


def test_tail_prints_every_event_type_and_marks_garbage(
    running_stack: RunningStack, fresh_topics: Settings
) -> None:
    topic = fresh_topics.topic_dlq
    events = sample_events()
    producer = Producer({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    with EventCodec() as codec:
        for event in events:
            producer.produce(topic, key=b"job", value=codec.encode(event), partition=0)
    producer.produce(topic, key=b"job", value=GARBAGE, partition=0)
    assert producer.flush(10) == 0
    producer.close()

    env = {**os.environ, **running_stack.env}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisperstream.cli.main",
            "tail",
            topic,
            "--from-beginning",
            "--max",
            str(len(events) + 1),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]

    assert [line["offset"] for line in lines] == list(range(len(events) + 1))
    decoded, garbage = lines[:-1], lines[-1]
    assert [line["type"] for line in decoded] == [type(e).__name__ for e in events]
    assert [line["event"] for line in decoded] == [to_plain(e) for e in events]
    assert {"DeadLetter", "WorkerHeartbeat", "CancelRequested"} <= {d["type"] for d in decoded}
    assert garbage["undecodable"] is True
    assert base64.b64decode(garbage["raw_base64"]) == GARBAGE
    assert garbage["error"]


def test_tail_alias_from_now_on_sees_only_new_records(
    running_stack: RunningStack, fresh_topics: Settings
) -> None:
    events = sample_events()
    producer = Producer({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers})
    with EventCodec() as codec:
        producer.produce(fresh_topics.topic_status, key=b"old", value=codec.encode(events[0]))
        assert producer.flush(10) == 0
        env = {**os.environ, **running_stack.env, "TOPIC_STATUS": fresh_topics.topic_status}
        tail = subprocess.Popen(
            [sys.executable, "-m", "whisperstream.cli.main", "tail", "status", "--max", "1"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # keep producing until the tail has started and picked one up
            for _ in range(40):
                producer.produce(
                    fresh_topics.topic_status, key=b"new", value=codec.encode(events[1])
                )
                producer.flush(10)
                try:
                    out, _ = tail.communicate(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                raise AssertionError("tail printed nothing")
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate()
    producer.close()
    line = json.loads(out)
    assert line["key"] == "new"
