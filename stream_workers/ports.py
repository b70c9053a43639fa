"""What the job runner needs from the outside world; real adapters and test fakes fit these."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from schemas.events import Event
from storage.keys import S3Uri


class EventPublisher(Protocol):
    async def publish(self, topic: str, key: str, event: Event) -> None:
        """Return once the broker has acknowledged the event (raise if it cannot)."""
        ...


class ObjectStorage(Protocol):
    """The synchronous subset of `storage.s3.ObjectStore` the worker uses (run in threads)."""

    def download_to(self, uri: S3Uri, path: Path) -> Path: ...

    def exists(self, uri: S3Uri) -> bool: ...

    def put_json(self, uri: S3Uri, document: object) -> object: ...

    def get_json(self, uri: S3Uri, max_bytes: int = ...) -> Any: ...


class CancelView(Protocol):
    def is_cancelled(self, job_id: str) -> bool: ...
