"""Errors of the storage package; everything raised here derives from StorageError."""

from __future__ import annotations

from whisperstream.errors import WhisperstreamError


class StorageError(WhisperstreamError):
    """Root of the storage package's errors."""


class InvalidS3UriError(StorageError, ValueError):
    """A string that is not an ``s3://bucket/key`` URI."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"not an s3://bucket/key URI ({reason}): {uri!r}")
        self.uri = uri
        self.reason = reason


class ObjectNotFoundError(StorageError):
    """The bucket or the object does not exist."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"no such object: {uri}")
        self.uri = uri


class StorageUnavailableError(StorageError):
    """S3 could not be reached or answered with an error other than 'not found'."""


class UploadAbortedError(StorageError):
    """The writer of a streaming upload gave up; the partial upload was discarded."""
