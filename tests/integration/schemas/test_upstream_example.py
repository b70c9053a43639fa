"""examples/upstream_producer.py really produces a request our codec reads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from minio import Minio

from schemas.codec import EventCodec
from schemas.events import Priority, Source, TranscriptionRequested
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "upstream_producer.py"


def test_example_producer_round_trip(
    running_stack: RunningStack, fresh_topics: Settings, jfk_flac: Path
) -> None:
    settings = fresh_topics
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            str(jfk_flac),
            "--bootstrap",
            settings.kafka_bootstrap_servers,
            "--s3-endpoint",
            settings.s3_endpoint,
            "--topic",
            settings.topic_requests_high,
            "--priority",
            "high",
            "--owner",
            "upstream-team",
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    job_id = result.stdout.strip()

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"example-{job_id}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([settings.topic_requests_high])
        deadline = time.monotonic() + 30
        msg = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
    finally:
        consumer.close()
    assert msg is not None
    assert msg.key() == job_id.encode()

    with EventCodec() as codec:
        event = codec.decode(msg.value() or b"", TranscriptionRequested)
    expected_sha = hashlib.sha256(jfk_flac.read_bytes()).hexdigest()
    assert event.job_id == job_id
    assert event.priority is Priority.HIGH
    assert event.source is Source.KAFKA
    assert event.owner == "upstream-team"
    assert event.audio.sha256 == expected_sha
    assert event.audio.uri == f"s3://audio/uploads/{job_id}/jfk.flac"

    host, port = settings.s3_host_port
    client = Minio(
        f"{host}:{port}",
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=False,
    )
    response = client.get_object("audio", f"uploads/{job_id}/jfk.flac")
    try:
        assert hashlib.sha256(response.read()).hexdigest() == expected_sha
    finally:
        response.close()
        response.release_conn()
