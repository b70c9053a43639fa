"""An asyncio front to confluent-kafka's idempotent ``Producer``.

``send`` returns only once the broker has acknowledged the record (``acks=all``), so a
caller can tell a client "accepted" knowing the event is in Kafka.  librdkafka's
delivery reports are served by a poll thread and handed to the event loop with
``call_soon_threadsafe``.  ``produce`` is the synchronous, fire-and-forget form for
threads without an event loop (the worker's control reader).

Both the API and the worker publish through this class, so both get the one
replacement of a fenced producer (seen after a Tansu restart).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from whisperstream.errors import WhisperstreamError
from whisperstream.kafka_security import KafkaConnection, as_connection
from whisperstream.settings import Settings

log = logging.getLogger(__name__)
# poll() returns as soon as a delivery report arrives; the timeout only bounds how long
# close() waits. A short one would wake the poll thread (and take the GIL) many times a
# second, which a worker transcribing in the same process pays for.
_POLL_INTERVAL_S = 0.5
# Errors after which this librdkafka producer never delivers again (its idempotent
# producer id is fenced or fatally out of sequence): a new producer must take over.
_UNRECOVERABLE = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    }
)


def is_unrecoverable(err: KafkaError) -> bool:
    return bool(err.fatal()) or err.code() in _UNRECOVERABLE


class PublishError(WhisperstreamError):
    """A record was not confirmed by the broker (not sent, failed, or timed out)."""


class KafkaProducer:
    """Start with :meth:`start` (or ``async with``); :meth:`close` flushes and stops."""

    def __init__(
        self,
        kafka: KafkaConnection | str,
        *,
        delivery_timeout_s: float = 10.0,
        client_id: str = "whisperstream",
        config: dict[str, Any] | None = None,
    ) -> None:
        if delivery_timeout_s <= 0:
            raise ValueError(f"delivery_timeout_s must be positive, got {delivery_timeout_s}")
        self._delivery_timeout_s = delivery_timeout_s
        self._config: dict[str, Any] = as_connection(kafka).client_config(
            **{
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "delivery.timeout.ms": int(delivery_timeout_s * 1000),
                # librdkafka's own log lines go to Python logging instead of raw stderr
                "logger": logging.getLogger("whisperstream.kafka"),
                "request.timeout.ms": max(1000, min(30000, int(delivery_timeout_s * 1000))),
                **(config or {}),
            }
        )
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        # set from librdkafka's threads when the producer can no longer deliver
        self._broken = threading.Event()
        self._replacing = threading.Lock()
        self.replacements = 0

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> KafkaProducer:
        return cls(KafkaConnection.from_settings(settings), **options)

    @property
    def delivery_timeout_s(self) -> float:
        return self._delivery_timeout_s

    async def start(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._producer is not None:
            return
        self._producer = self._new_producer()
        # cleared only now: a sender that saw it clear finds the new producer in place
        self._broken.clear()
        self._stopping.clear()
        self._poller = threading.Thread(
            target=self._poll_loop, name="kafka-producer-poll", daemon=True
        )
        self._poller.start()

    def _new_producer(self) -> Producer:
        try:
            return Producer({**self._config, "error_cb": self._on_error})
        except KafkaException as exc:
            raise PublishError(f"cannot create the Kafka producer: {exc}") from exc

    def _on_error(self, err: KafkaError) -> None:
        if is_unrecoverable(err):
            log.warning("Kafka producer is unusable (%s); a new one will take over", err)
            self._broken.set()

    def _replace_if_broken(self) -> None:
        """Swap in a new producer (a new producer id) after an unrecoverable error.

        Blocking (it waits for the old poll thread) and safe from any thread."""
        if not self._broken.is_set():
            return
        with self._replacing:
            if not self._broken.is_set() or self._producer is None:
                return  # another caller replaced it while this one waited
            old_poller, old = self._poller, self._producer
            self._stopping.set()
            if old_poller is not None:
                old_poller.join()
            self._producer = None
            old.purge()
            old.poll(0)  # serve the purged records' delivery reports
            self.replacements += 1
            self._start()

    async def close(self, flush_timeout_s: float = 10.0) -> None:
        """Wait up to ``flush_timeout_s`` for records in flight, then stop polling."""
        producer = self._producer
        if producer is None:
            return
        remaining = await asyncio.to_thread(producer.flush, flush_timeout_s)
        if remaining:
            log.error("%d records were not delivered before the producer closed", remaining)
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        self._poller = None
        self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def send(self, topic: str, key: str | bytes | None, value: bytes) -> tuple[int, int]:
        """Produce one record and wait for the broker's acknowledgement.

        Returns ``(partition, offset)``; raises :class:`PublishError` if the record was
        not confirmed within the delivery timeout. A record the broker rejected because
        this producer was fenced was not written, so it is sent once more by a new one.
        """
        try:
            return await self._send_once(topic, key, value)
        except PublishError:
            if not self._broken.is_set():
                raise
        return await self._send_once(topic, key, value)

    async def _send_once(
        self, topic: str, key: str | bytes | None, value: bytes
    ) -> tuple[int, int]:
        if self._broken.is_set():
            await asyncio.to_thread(self._replace_if_broken)
        producer = self._require_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(err: KafkaError | None, msg: Message) -> None:
            if err is not None and is_unrecoverable(err):
                self._broken.set()
            loop.call_soon_threadsafe(_resolve, future, topic, err, msg)

        try:
            producer.produce(topic, value=value, key=key, on_delivery=settle)
        except (BufferError, KafkaException) as exc:
            raise PublishError(f"cannot produce to {topic}: {exc}") from exc
        try:
            # librdkafka reports a timeout itself (delivery.timeout.ms); the margin only
            # guards against a report that never comes.
            return await asyncio.wait_for(future, self._delivery_timeout_s + 5.0)
        except TimeoutError as exc:
            raise PublishError(
                f"no delivery report from Kafka for {topic} within "
                f"{self._delivery_timeout_s + 5.0:.1f} s"
            ) from exc

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Queue one record without waiting for it; ``on_delivery`` runs on the poll thread.

        Blocks only while librdkafka's queue is full. Raises :class:`PublishError`."""
        self._replace_if_broken()
        producer = self._require_started()

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None and is_unrecoverable(err):
                self._broken.set()
            if on_delivery is not None:
                on_delivery(err, msg)

        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=report)
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:
                raise PublishError(f"cannot produce to {topic}: {exc}") from exc
            else:
                return

    async def ping(self, timeout_s: float = 5.0) -> float:
        """Fetch cluster metadata; returns the seconds it took. Raises PublishError."""
        producer = self._require_started()
        started = time.perf_counter()
        try:
            metadata = await asyncio.to_thread(producer.list_topics, None, timeout_s)
        except KafkaException as exc:
            raise PublishError(f"Kafka metadata request failed: {exc}") from exc
        if not metadata.brokers:
            raise PublishError("Kafka metadata lists no brokers")
        return time.perf_counter() - started

    def _require_started(self) -> Producer:
        if self._producer is None:
            raise PublishError("the Kafka producer is not started")
        return self._producer

    def _poll_loop(self) -> None:
        producer = self._producer
        if producer is None:
            return
        while not self._stopping.is_set():
            producer.poll(_POLL_INTERVAL_S)


def _resolve(
    future: asyncio.Future[tuple[int, int]], topic: str, err: KafkaError | None, msg: Message
) -> None:
    if future.done():  # the caller timed out or was cancelled
        return
    if err is not None:
        future.set_exception(PublishError(f"Kafka did not confirm a record to {topic}: {err}"))
        return
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        future.set_exception(PublishError(f"Kafka confirmed a record to {topic} without offset"))
        return
    future.set_result((partition, offset))
