"""Readiness checks that do real work: produce and consume, put and get, select 1."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from minio import Minio
from minio.error import MinioException
from urllib3.exceptions import HTTPError

from whisperstream.errors import StackError
from whisperstream.kafka_security import KafkaConnection, as_connection

READINESS_TOPIC = "_whisperstream.readiness"
READINESS_KEY = "_whisperstream/readiness"


def kafka_client_config(kafka: KafkaConnection | str, **extra: object) -> dict[str, Any]:
    """librdkafka settings with its log lines sent to Python logging, not to stderr
    (where they would fill the terminal of `whisperstream up` while the broker is away)."""
    return as_connection(kafka).client_config(
        logger=logging.getLogger("whisperstream.stack.kafka"), **extra
    )


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    detail: str


def timed(name: str, check: Callable[[], None]) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except (StackError, KafkaException, MinioException, HTTPError, psycopg.Error, OSError) as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return CheckResult(
            name, ok=False, latency_ms=elapsed, detail=str(exc) or type(exc).__name__
        )
    return CheckResult(
        name, ok=True, latency_ms=(time.perf_counter() - started) * 1000, detail="ok"
    )


def check_kafka(bootstrap: KafkaConnection | str, timeout: float = 10.0) -> None:
    """Produce a unique record with acks=all and read that very record back."""
    admin = AdminClient(kafka_client_config(bootstrap, **{"socket.timeout.ms": 3000}))
    metadata = admin.list_topics(timeout=timeout)
    if READINESS_TOPIC not in metadata.topics:
        for future in admin.create_topics([NewTopic(READINESS_TOPIC, 1, 1)]).values():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    nonce = uuid.uuid4().hex.encode()
    delivered: list[int] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.offset())  # type: ignore[attr-defined]

    producer = Producer(
        kafka_client_config(bootstrap, acks="all", **{"message.timeout.ms": int(timeout * 1000)})
    )
    try:
        producer.produce(READINESS_TOPIC, key=b"readiness", value=nonce, on_delivery=on_delivery)
        producer.flush(timeout)
    finally:
        producer.close()
    if not delivered:
        raise StackError(f"broker did not confirm a produce: {errors or 'timeout'}")
    consumer = KafkaConsumer(
        kafka_client_config(
            bootstrap, **{"group.id": "_whisperstream.readiness", "enable.auto.commit": False}
        )
    )
    try:
        consumer.assign([TopicPartition(READINESS_TOPIC, 0, delivered[0])])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() == nonce:
                return
        raise StackError("broker accepted a record but did not return it")
    finally:
        consumer.close()


def s3_client(endpoint_host: str, port: int, access_key: str, secret_key: str) -> Minio:
    return Minio(
        f"{endpoint_host}:{port}", access_key=access_key, secret_key=secret_key, secure=False
    )


def check_s3(client: Minio, bucket: str) -> None:
    """Put an object and read the same bytes back."""
    nonce = uuid.uuid4().hex.encode()
    client.put_object(bucket, READINESS_KEY, io.BytesIO(nonce), len(nonce))
    response = client.get_object(bucket, READINESS_KEY)
    try:
        if response.read() != nonce:
            raise StackError("S3 returned different bytes than were put")
    finally:
        response.close()
        response.release_conn()


def check_postgres(url: str, timeout: float = 5.0) -> None:
    with psycopg.connect(plain_postgres_url(url), connect_timeout=max(1, int(timeout))) as conn:
        row = conn.execute("select 1").fetchone()
        if row != (1,):
            raise StackError(f"select 1 returned {row!r}")


def plain_postgres_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (`postgresql+asyncpg://` and friends)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgres") else url
