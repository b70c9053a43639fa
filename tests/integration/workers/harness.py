"""Drives real worker processes against the real broker and S3 for the worker tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from schemas.codec import EventCodec
from schemas.events import (
    AudioRef,
    CancelRequested,
    Event,
    JobStatus,
    JobStatusChanged,
    Priority,
    Source,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from storage.keys import audio_uri
from storage.s3 import ObjectStore
from tests.support.stack import RunningStack
from whisperstream.settings import Settings

E = TypeVar("E", bound=Event)
REPO = Path(__file__).resolve().parents[3]


class Bus:
    """Produces requests and reads whole topics back, all through the real broker."""

    def __init__(self, settings: Settings, *, fetch_wait_ms: int = 50) -> None:
        """``fetch_wait_ms``: how long the broker holds an empty fetch. Short answers a
        test's every read soon; a benchmark uses a long one so that its own polling does
        not keep the broker (and the CPUs the worker needs) busy."""
        self.settings = settings
        self._fetch_wait_ms = fetch_wait_ms
        self.codec = EventCodec()
        self.producer = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True}
        )
        self.store = ObjectStore.from_settings(settings)
        self._consumers: dict[str, tuple[Consumer, list[bytes]]] = {}
        self._at_end: dict[str, set[int]] = {}
        self._decoded: dict[tuple[str, type], list[Event]] = {}

    def close(self) -> None:
        for consumer, _ in self._consumers.values():
            consumer.close()
        self.store.close()
        self.codec.close()

    def upload(self, job_id: str, audio: Path) -> str:
        uri = audio_uri(self.settings.audio_bucket, job_id, audio.name)
        self.store.put_bytes(uri, audio.read_bytes(), "audio/flac")
        return str(uri)

    def request(
        self,
        audio: Path,
        priority: Priority = Priority.NORMAL,
        job_id: str | None = None,
        model: str = "tiny.en",
    ) -> TranscriptionRequested:
        """Upload `audio` and produce its request (flushed: it is in the topic on return)."""
        request = self.prepare(audio, priority, job_id, model)
        self.submit(request)
        self.flush()
        return request

    def prepare(
        self,
        audio: Path,
        priority: Priority = Priority.NORMAL,
        job_id: str | None = None,
        model: str = "tiny.en",
    ) -> TranscriptionRequested:
        """Upload `audio` and build its request, without producing it yet."""
        job_id = job_id or new_event_id()
        uri = self.upload(job_id, audio)
        return TranscriptionRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            priority=priority,
            attempt=1,
            not_before=None,
            audio=AudioRef(uri, audio.stat().st_size, "0" * 64, "audio/flac", audio.name),
            model=model,
            engine=None,
            language=None,
            task=Task.TRANSCRIBE,
            options=TranscriptionOptions(),
            owner=None,
            idempotency_key=None,
            callback_url=None,
            source=Source.KAFKA,
            correlation_id=None,
        )

    def submit(self, request: TranscriptionRequested, partition: int | None = None) -> None:
        """Produce a prepared request to its priority's topic (call `flush` after).

        `partition` places it explicitly; by default the key (the job id) decides.
        """
        topic = (
            self.settings.topic_requests_high
            if request.priority == Priority.HIGH
            else self.settings.topic_requests_normal
        )
        value = self.codec.encode(request)
        key = request.job_id.encode()
        if partition is None:
            self.producer.produce(topic, key=key, value=value)
        else:
            self.producer.produce(topic, key=key, value=value, partition=partition)

    def flush(self) -> None:
        assert self.producer.flush(15) == 0

    def cancel(self, job_id: str) -> None:
        event = CancelRequested(new_event_id(), job_id, utc_now(), "test", None)
        self.send(self.settings.topic_control, job_id, self.codec.encode(event))

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.produce(topic, key=key.encode(), value=value)
        self.flush()

    def read(self, topic: str, kind: type[E]) -> list[E]:
        """Everything in `topic` so far (new messages are polled on every call)."""
        if topic not in self._consumers:
            consumer = Consumer(
                {
                    "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                    "group.id": f"test-reader-{new_event_id()}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": self._fetch_wait_ms,
                }
            )
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
            self._consumers[topic] = (consumer, [])
        consumer, seen = self._consumers[topic]
        # read until every partition is at its end; librdkafka reports an end once per
        # catch-up, so remember which partitions are there between calls
        at_end = self._at_end.setdefault(topic, set())
        partitions = {tp.partition for tp in consumer.assignment()}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = consumer.poll(0.05)
            if message is None:
                if at_end >= partitions:
                    break
                continue
            error = message.error()
            if error is None:
                seen.append(message.value() or b"")
                at_end.discard(message.partition() or 0)
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition() or 0)
        # decode only what is new since the last call: tests poll often, and a loaded
        # machine should spend its CPU on the workers, not on decoding the topic again
        decoded = self._decoded.setdefault((topic, kind), [])
        decoded.extend(self.codec.decode(raw, kind) for raw in seen[len(decoded) :])
        return [event for event in decoded if isinstance(event, kind)]

    def statuses(self, job_id: str) -> list[JobStatusChanged]:
        return [
            e for e in self.read(self.settings.topic_status, JobStatusChanged) if e.job_id == job_id
        ]

    def terminal(self, job_id: str) -> JobStatusChanged | None:
        return next((e for e in self.statuses(job_id) if e.status.is_terminal), None)

    def terminals(self, job_ids: Iterable[str]) -> dict[str, JobStatusChanged]:
        """The first terminal event of each of `job_ids` that has one, in one read."""
        wanted = set(job_ids)
        found: dict[str, JobStatusChanged] = {}
        for event in self.read(self.settings.topic_status, JobStatusChanged):
            if event.job_id in wanted and event.status.is_terminal:
                found.setdefault(event.job_id, event)
        return found

    def all_terminal(self, job_ids: Sequence[str]) -> bool:
        return len(self.terminals(job_ids)) == len(set(job_ids))


T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 90.0, interval: float = 0.2
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def worker_env(stack: RunningStack, settings: Settings, **extra: str) -> dict[str, str]:
    topics = {
        name.upper(): getattr(settings, name)
        for name in (
            "topic_requests_high",
            "topic_requests_normal",
            "topic_requests_retry",
            "topic_control",
            "topic_status",
            "topic_dlq",
            "topic_workers",
        )
    }
    return {
        **os.environ,
        **stack.env,
        **topics,
        "WHISPER_CACHE_DIR": str(settings.whisperstream_state_dir / "models"),
        "WHISPER_CPU_THREADS": "2",
        "HEARTBEAT_INTERVAL_S": "1",
        # group_assignment() reads aiokafka's group sync lines, which are INFO: other
        # libraries' records below WARNING are only logged at DEBUG
        "LOG_LEVEL": "DEBUG",
        **extra,
    }


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `whisperstream worker` process; SIGTERM on exit (then SIGKILL if it hangs)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "whisperstream.cli.main", "worker"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


def completed_text(bus: Bus, job_id: str) -> str:
    event = bus.terminal(job_id)
    assert event is not None
    assert event.status == JobStatus.COMPLETED, event
    assert event.result is not None
    return event.result.text


_SYNCED = re.compile(r"Successfully synced group \S+ with generation (-?\d+)")
_ASSIGNED = re.compile(r"Setting newly assigned partitions (.*) for group")
_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")
_REJOIN = "(Re-)joining group"


def group_assignment(log: Path, topic: str) -> tuple[int, frozenset[int]] | None:
    """A worker's latest consumer-group generation and its partitions of `topic`.

    Read from the worker's log (aiokafka logs every sync and assignment): None until the
    worker has joined the group and been given its partitions.
    """
    generation: int | None = None
    partitions: frozenset[int] | None = None
    for line in log.read_text(errors="replace").splitlines():
        if (synced := _SYNCED.search(line)) is not None:
            generation, partitions = int(synced[1]), None
        elif (assigned := _ASSIGNED.search(line)) is not None and generation is not None:
            found = _PARTITION.findall(assigned[1])
            partitions = frozenset(int(p) for name, p in found if name == topic)
    if generation is None or partitions is None:
        return None
    return generation, partitions


def group_joins(log: Path) -> int:
    """How many times the worker (re-)joined its consumer group: each rebalance is one more."""
    return log.read_text(errors="replace").count(_REJOIN)
