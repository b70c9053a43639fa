"""confluent-kafka adapters: an awaitable publisher and the all-partitions control reader.

The publisher is confluent-kafka rather than Faust's aiokafka producer because Tansu
refuses aiokafka's idempotent producer (InitProducerId), and without idempotence a
broker retry could duplicate a status event; confluent-kafka's idempotence works.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import CancelRequested, DeadLetter, Event, SourcePosition, utc_now
from stream_workers.errors import TransientJobError
from whisperstream.kafka_producer import is_unrecoverable

log = logging.getLogger(__name__)

_IDLE_WAKE_S = 0.5
"""How often the Kafka threads wake when nothing arrives (to notice close())."""


class KafkaUnavailableError(TransientJobError):
    """An event could not be delivered to the broker."""


class KafkaPublisher:
    def __init__(self, bootstrap: str, codec: EventCodec, *, client_id: str) -> None:
        self._codec = codec
        self._config = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60_000,
        }
        # set from librdkafka's threads once this producer id is fenced or fatally broken
        self._broken = threading.Event()
        self._swap = threading.Lock()
        self._producer = self._new_producer()
        self.replacements = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        self._broken.clear()
        return Producer({**self._config, "error_cb": self._on_error})

    def _on_error(self, error: KafkaError) -> None:
        if is_unrecoverable(error):
            log.warning("Kafka producer is unusable (%s); a new one will take over", error)
            self._broken.set()

    def _replace_if_broken(self) -> None:
        """A fenced idempotent producer never delivers again (seen after a Tansu restart):
        swap in a new one; what the old one still held fails, and those jobs are retried."""
        if not self._broken.is_set():
            return
        with self._swap:
            if not self._broken.is_set():
                return
            old, self._producer = self._producer, self._new_producer()
            self.replacements += 1
        old.purge()
        old.poll(0)  # serve the purged records' delivery reports

    def _poll(self) -> None:
        # poll returns as soon as a delivery report arrives; the timeout only bounds how
        # long close() waits. Every wake-up takes the GIL from a running transcription,
        # so this thread should wake for reports, not on a short timer.
        while not self._stop.is_set():
            self._producer.poll(_IDLE_WAKE_S)

    async def publish(self, topic: str, key: str, event: Event) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None and is_unrecoverable(error):
                self._broken.set()
            loop.call_soon_threadsafe(_settle, done, error, topic)

        self.produce(topic, key, self._codec.encode(event), delivered)
        await done

    def produce(
        self,
        topic: str,
        key: str,
        value: bytes,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        self._replace_if_broken()
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key.encode(), on_delivery=on_delivery
                )
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise KafkaUnavailableError(f"cannot produce to {topic}: {exc}") from exc
            else:
                return

    def close(self) -> None:
        remaining = self._producer.flush(30)
        self._stop.set()
        self._poller.join(5)
        if remaining:
            log.error("%d events were not delivered before the producer closed", remaining)


def _settle(future: asyncio.Future[None], error: KafkaError | None, topic: str) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaUnavailableError(f"delivery to {topic} failed: {error}"))


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
        bootstrap: str,
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
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"whisperstream-control-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 500,
                "auto.offset.reset": "earliest",
            }
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
        # Every worker reads every control message: a deterministic event id lets the
        # projector recognise the copies of one dead letter as one.
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{position}"))
        dead = DeadLetter(
            event_id=event_id,
            job_id=None,
            occurred_at=utc_now(),
            error_type="UndecodableEvent",
            error_message=str(exc),
            stack_trace=None,
            retry_count=0,
            source=position,
            original_value=raw,
            request=None,
        )
        key = (message.key() or b"").decode("utf-8", "replace") or event_id
        self._publisher.produce(self._dlq_topic, key, self._codec.encode(dead))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()
