"""confluent-kafka adapters: an awaitable publisher and the all-partitions control reader.

The publisher is confluent-kafka rather than Faust's aiokafka producer because Tansu
refuses aiokafka's idempotent producer (InitProducerId), and without idempotence a
broker retry could duplicate a status event; confluent-kafka's idempotence works.
"""

from __future__ import annotations

import logging
import threading
import uuid

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import CancelRequested, Event, SourcePosition
from stream_workers.dead_letters import undecodable_dead_letter
from stream_workers.errors import TransientJobError
from whisperstream.kafka_producer import KafkaProducer, PublishError
from whisperstream.kafka_security import KafkaConnection, as_connection

log = logging.getLogger(__name__)

_IDLE_WAKE_S = 0.5
"""How often the control reader wakes when nothing arrives (to notice close())."""
_DELIVERY_TIMEOUT_S = 60.0


class KafkaUnavailableError(TransientJobError):
    """An event could not be delivered to the broker."""


class KafkaPublisher:
    """Publishes events, encoded, through the shared idempotent :class:`KafkaProducer`."""

    def __init__(self, kafka: KafkaConnection | str, codec: EventCodec, *, client_id: str) -> None:
        self._codec = codec
        # A worker's events may wait out a short broker outage: a minute, then a retry.
        self._producer = KafkaProducer(
            kafka, client_id=client_id, delivery_timeout_s=_DELIVERY_TIMEOUT_S
        )

    @property
    def replacements(self) -> int:
        """How many times a fenced producer was replaced by a new one."""
        return self._producer.replacements

    async def start(self) -> None:
        await self._producer.start()

    async def publish(self, topic: str, key: str, event: Event) -> None:
        try:
            await self._producer.send(topic, key, self._codec.encode(event))
        except PublishError as exc:
            raise KafkaUnavailableError(str(exc)) from exc

    def produce(self, topic: str, key: str, value: bytes) -> None:
        """Queue a record from a thread without an event loop; delivery is not awaited."""
        try:
            self._producer.produce(topic, key, value)
        except PublishError as exc:
            raise KafkaUnavailableError(str(exc)) from exc

    async def close(self) -> None:
        await self._producer.close(flush_timeout_s=30.0)


class CancelRegistry:
    """Job ids with a cancel seen; read by job threads, written by the control reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.add(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


class ControlReader:
    """Reads every partition of the control topic from the start, outside any group's share.

    `assign()` (not `subscribe()`) gives this worker all partitions whatever the group
    does; offsets are never committed, so a restart reads every cancel again.
    """

    def __init__(
        self,
        kafka: KafkaConnection | str,
        topic: str,
        *,
        codec: EventCodec,
        registry: CancelRegistry,
        publisher: KafkaPublisher,
        dlq_topic: str,
    ) -> None:
        self._topic = topic
        self._codec = codec
        self._registry = registry
        self._publisher = publisher
        self._dlq_topic = dlq_topic
        self._consumer = Consumer(
            as_connection(kafka).client_config(
                **{
                    "group.id": f"whisperstream-control-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 500,
                    "auto.offset.reset": "earliest",
                }
            )
        )
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-reader", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        metadata = self._consumer.list_topics(self._topic, timeout=timeout)
        partitions = metadata.topics[self._topic].partitions
        if not partitions:
            raise KafkaUnavailableError(f"control topic {self._topic} does not exist")
        self._pending_eof = set(partitions)
        self._consumer.assign(
            [TopicPartition(self._topic, p, -2) for p in partitions]  # -2: the beginning
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(_IDLE_WAKE_S)  # returns early for a message
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._pending_eof.discard(message.partition() or 0)
                    if not self._pending_eof:
                        self.caught_up.set()
                else:
                    log.warning("control topic: %s", error)
                continue
            self._handle(message)

    def _handle(self, message: Message) -> None:
        raw = message.value() or b""
        try:
            cancel = self._codec.decode(raw, CancelRequested)
        except UndecodableEvent as exc:
            self._dead_letter(message, raw, exc)
            return
        self._registry.add(cancel.job_id)
        log.info("cancel seen for job %s", cancel.job_id)

    def _dead_letter(self, message: Message, raw: bytes, exc: UndecodableEvent) -> None:
        position = SourcePosition(self._topic, message.partition() or 0, message.offset() or 0)
        # Every worker reads every control record: the builder gives all copies one id.
        dead = undecodable_dead_letter(position, raw, message.key(), exc, names_job=False)
        self._publisher.produce(self._dlq_topic, dead.key, self._codec.encode(dead.event))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()
