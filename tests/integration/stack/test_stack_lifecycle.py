"""The local stack's own behaviour: readiness, idempotent up, clean down, durability."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from minio import Minio

from tests.support.stack import random_stack_settings, stack_env, stack_state_dir
from whisperstream.errors import PortInUseError
from whisperstream.settings import Settings
from whisperstream.stack.manager import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def durable_stack() -> Iterator[LocalStack]:
    with stack_state_dir() as state_dir:
        stack = LocalStack(random_stack_settings(state_dir))
        try:
            yield stack
        finally:
            stack.down()


def _pids(stack: LocalStack) -> list[int]:
    data = json.loads(stack.state_path.read_text())
    return [int(proc["pid"]) for proc in data["processes"].values()]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _s3(settings: Settings) -> Minio:
    host, port = settings.s3_host_port
    return Minio(
        f"{host}:{port}",
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=False,
    )


def _consume(bootstrap: str, group: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            values.append(msg.value() or b"")
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    return values


def test_up_status_down_leaves_no_process(durable_stack: LocalStack) -> None:
    result = durable_stack.up()
    assert not result.already_running
    assert sorted(result.started) == ["broker", "postgres", "s3"]
    status = durable_stack.status()
    assert status.healthy, status
    assert {s.name for s in status.services} == {"s3", "postgres", "broker"}
    pids = _pids(durable_stack)
    assert all(psutil.pid_exists(pid) for pid in pids)

    again = durable_stack.up()
    assert again.already_running
    assert again.started == []
    assert _pids(durable_stack) == pids

    stopped = durable_stack.down()
    assert sorted(stopped) == ["broker", "postgres", "s3"]
    assert all(_gone(pid) for pid in pids)
    assert not durable_stack.state_path.exists()
    assert not durable_stack.status().healthy


def test_port_in_use_is_named() -> None:
    settings = random_stack_settings(Path(tempfile.mkdtemp(prefix="whisperstream-test-")))
    host, port = settings.kafka_host_port
    with socket.socket() as blocker:
        blocker.bind((host, port))
        blocker.listen()
        stack = LocalStack(settings)
        with pytest.raises(PortInUseError, match=str(port)):
            stack.up(volatile=True)
        # nothing may be left running after a failed start
        assert not stack.state_path.exists() or _pids(stack) == []


def test_durable_mode_keeps_everything_across_restart(durable_stack: LocalStack) -> None:
    settings = durable_stack.settings
    bootstrap = settings.kafka_bootstrap_servers
    durable_stack.up()

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("durability", 1, 1)])["durability"].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in (b"one", b"two", b"three"):
        producer.produce("durability", key=b"k", value=value)
    assert producer.flush(10) == 0
    producer.close()
    assert _consume(bootstrap, "durability-group", "durability", 2) == [b"one", b"two"]

    _s3(settings).put_object(settings.audio_bucket, "keep/me.txt", io.BytesIO(b"kept"), 4)
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute("create table durability_probe (value text)")
        conn.execute("insert into durability_probe values ('kept')")

    old_pids = _pids(durable_stack)
    durable_stack.down()
    assert all(_gone(pid) for pid in old_pids)

    assert not durable_stack.up().already_running
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert "durability" in topics
    assert settings.topic_status in topics
    # the committed offset survived: the group resumes at the third record
    assert _consume(bootstrap, "durability-group", "durability", 1) == [b"three"]
    # and the log itself survived: a new group reads all three
    assert _consume(bootstrap, "fresh-group", "durability", 3) == [b"one", b"two", b"three"]
    response = _s3(settings).get_object(settings.audio_bucket, "keep/me.txt")
    try:
        assert response.read() == b"kept"
    finally:
        response.close()
        response.release_conn()
    with psycopg.connect(settings.effective_database_url) as conn:
        assert conn.execute("select value from durability_probe").fetchall() == [("kept",)]


def test_cli_up_status_down() -> None:
    settings = random_stack_settings(Path(tempfile.mkdtemp(prefix="whisperstream-test-")))
    env = {**os.environ, **stack_env(settings)}
    env.pop("DATABASE_URL")
    cli = [sys.executable, "-m", "whisperstream.cli.main", "stack"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    up = run("up", "--volatile")
    try:
        assert up.returncode == 0, up.stderr
        assert "stack up in" in up.stdout
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"DATABASE_URL={settings.effective_database_url}" in status.stdout
        assert "volatile" in status.stdout
        again = run("up")
        assert "nothing changed" in again.stdout
        pids = _pids(LocalStack(settings))
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert all(_gone(pid) for pid in pids)
    stopped = run("status")
    assert stopped.returncode == 1
    assert "stopped" in stopped.stdout


def test_isolation_fixtures_are_fresh(
    fresh_topics: Settings, fresh_buckets: Settings, fresh_database_url: str
) -> None:
    topics = AdminClient({"bootstrap.servers": fresh_topics.kafka_bootstrap_servers}).list_topics(
        timeout=10
    )
    assert fresh_topics.topic_status in topics.topics
    assert fresh_topics.topic_status != "transcription.status"
    client = _s3(fresh_buckets)
    assert client.bucket_exists(fresh_buckets.audio_bucket)
    assert list(client.list_objects(fresh_buckets.audio_bucket)) == []
    url = fresh_database_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from transcription_jobs").fetchone() == (0,)
