"""In-memory fakes of the worker's ports (`stream_workers.ports`), for unit tests.

Each fake behaves as its real adapter does wherever the job runner can tell:
`tests/integration/contracts/` runs the same checks against the fake and the real
adapter on the local stack, so a difference shows up there, not in production.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

from schemas.codec import EventCodec
from schemas.events import Event, JobStatusChanged
from storage.errors import ObjectNotFoundError
from storage.keys import S3Uri

GET_JSON_MAX_BYTES = 64 * 1024 * 1024
"""`storage.s3.ObjectStore.get_json`'s default limit."""


class MemoryStore:
    """`ObjectStorage` (the real one: `storage.s3.ObjectStore`) holding bytes by URI.

    `fail_download` makes every download raise it; `downloads` counts the attempts.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_download: Exception | None = None
        self.downloads = 0

    def put_bytes(
        self, uri: S3Uri, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.objects[str(uri)] = bytes(data)

    def put_json(self, uri: S3Uri, document: object) -> object:
        # serialised as the real store does: what cannot be JSON fails here, not later
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        self.put_bytes(uri, text.encode("utf-8"), "application/json")
        return None

    def get_json(self, uri: S3Uri, max_bytes: int = GET_JSON_MAX_BYTES) -> Any:
        data = self._get(uri)
        if len(data) > max_bytes:
            raise ValueError(f"{uri} is {len(data)} bytes, over the limit of {max_bytes}")
        return json.loads(data)

    def exists(self, uri: S3Uri) -> bool:
        return str(uri) in self.objects

    def delete(self, uri: S3Uri) -> None:
        self.objects.pop(str(uri), None)

    def download_to(self, uri: S3Uri, path: Path) -> Path:
        self.downloads += 1
        if self.fail_download is not None:
            raise self.fail_download
        path.write_bytes(self._get(uri))
        return path

    def _get(self, uri: S3Uri) -> bytes:
        try:
            return self.objects[str(uri)]
        except KeyError:
            raise ObjectNotFoundError(str(uri)) from None


@functools.cache
def _codec() -> EventCodec:
    return EventCodec()


class MemoryPublisher:
    """`EventPublisher` (the real one: `stream_workers.kafka_io.KafkaPublisher`).

    Each event goes through the codec as on the way to Kafka and back, so an event the
    real publisher could not encode fails here too, and `sent` holds what a consumer
    would read. Acknowledges after `delay` seconds, recording each event once acknowledged.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.sent: list[tuple[str, str, Event]] = []
        self.delay = delay

    async def publish(self, topic: str, key: str, event: Event) -> None:
        read_back = _codec().decode_any(_codec().encode(event))
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sent.append((topic, key, read_back))

    def on(self, topic: str) -> list[tuple[str, Event]]:
        """(key, event) of everything acknowledged on `topic`, in publishing order."""
        return [(key, event) for t, key, event in self.sent if t == topic]

    def statuses(self) -> list[JobStatusChanged]:
        return [e for _, _, e in self.sent if isinstance(e, JobStatusChanged)]


class MemoryCancels:
    """`CancelView` (the real one: `stream_workers.kafka_io.CancelRegistry`, fed by the
    control reader from the control topic)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def cancel(self, job_id: str) -> None:
        self.ids.add(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self.ids
