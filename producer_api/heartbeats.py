"""The latest ``WorkerHeartbeat`` of each worker, read from the workers topic.

A daemon thread assigns itself every partition of the topic from the beginning (no
consumer group join, no committed offsets) and keeps the newest heartbeat per worker.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import WorkerHeartbeat
from whisperstream.kafka_security import KafkaConnection, as_connection


@dataclass(frozen=True, slots=True)
class HeartbeatSnapshot:
    live: list[WorkerHeartbeat]
    stale: list[WorkerHeartbeat]
    undecodable: int
    reading: bool
    """False until the topic's partitions have been assigned."""
    error: str | None


class HeartbeatMonitor:
    def __init__(
        self,
        kafka: KafkaConnection | str,
        topic: str,
        codec: EventCodec,
        live_window_s: float = 60.0,
    ) -> None:
        self._config = as_connection(kafka).client_config(
            **{
                "group.id": f"whisperstream-api-heartbeats-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        self._topic = topic
        self._codec = codec
        self._window = timedelta(seconds=live_window_s)
        self._latest: dict[str, WorkerHeartbeat] = {}
        self._undecodable = 0
        self._reading = False
        self._error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def snapshot(self, now: datetime) -> HeartbeatSnapshot:
        with self._lock:
            beats = sorted(self._latest.values(), key=lambda b: b.worker_id)
            live = [b for b in beats if now - b.occurred_at <= self._window]
            stale = [b for b in beats if now - b.occurred_at > self._window]
            return HeartbeatSnapshot(live, stale, self._undecodable, self._reading, self._error)

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(2.0)
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None or message.error() is not None:
                    continue
                self._record(message.value())
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        try:
            metadata = consumer.list_topics(self._topic, timeout=5)
        except KafkaException as exc:
            self._set_error(f"cannot read the workers topic's metadata: {exc}")
            return False
        found = metadata.topics.get(self._topic)
        if found is None or found.error is not None or not found.partitions:
            self._set_error(f"the workers topic {self._topic} does not exist (yet)")
            return False
        consumer.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in sorted(found.partitions)]
        )
        with self._lock:
            self._reading = True
            self._error = None
        return True

    def _record(self, value: bytes | None) -> None:
        try:
            beat = self._codec.decode(value or b"", WorkerHeartbeat)
        except UndecodableEvent:
            # Counted and shown in /admin/health; the projector records poison messages.
            with self._lock:
                self._undecodable += 1
            return
        with self._lock:
            held = self._latest.get(beat.worker_id)
            if held is None or held.occurred_at <= beat.occurred_at:
                self._latest[beat.worker_id] = beat

    def _set_error(self, message: str) -> None:
        with self._lock:
            self._error = message
