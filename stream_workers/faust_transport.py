"""faust's aiokafka transport with the worker consumer's fetch wait as a setting.

faust builds the worker's aiokafka consumer with ``fetch_max_wait_ms=1500`` and has no
setting for it. On Apache Kafka the wait costs no latency (the broker answers a fetch as
soon as a record arrives), but Tansu answers only when the wait is over, so a request
could sit up to 1.5 s before the worker saw it. The subclasses below change that one
value (``WORKER_FETCH_MAX_WAIT_MS``) and leave everything else as faust builds it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # The consumer keeps its fetch_max_wait_ms argument here and hands it to its
        # fetcher when it starts, after this method returns (on_start); aiokafka has no
        # public setter. tests/integration/workers/test_worker_fetch_wait.py checks it.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class WorkerTransport(faust_aiokafka.Transport):
    """The aiokafka transport whose worker consumer waits at most ``fetch_max_wait_ms``."""

    Consumer = _Consumer

    def __init__(self, url: Any, app: Any, *, fetch_max_wait_ms: int) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
