"""Stream one multipart file field into S3: sniffed, size-limited, hashed on the way.

The body is read in chunks and handed to a worker thread running minio's multipart
upload through a bounded pipe, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass

from aiohttp import BodyPartReader, hdrs

from producer_api.problems import ProblemError
from producer_api.sniff import SNIFF_BYTES, sniff
from storage.errors import StorageError, UploadAbortedError
from storage.keys import S3Uri
from storage.pipe import ChunkPipe
from storage.s3 import ObjectStore

READ_CHUNK = 256 * 1024
PIPE_BUFFER = 4 * 1024 * 1024
SUPPORTED = "wav, flac, mp3, ogg, opus, m4a, mp4, 3gp, mov, webm, mkv, aac, amr, aiff"


@dataclass(frozen=True, slots=True)
class StoredUpload:
    uri: S3Uri
    size: int
    sha256: str
    content_type: str


class UploadTooLargeError(ProblemError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "Content Too Large",
            f"the file is larger than the limit of {limit // (1024 * 1024)} MB "
            "(MAX_UPLOAD_SIZE_MB)",
            slug="upload-too-large",
        )


async def stream_upload(
    part: BodyPartReader, store: ObjectStore, uri: S3Uri, max_bytes: int
) -> StoredUpload:
    """Upload ``part`` to ``uri``; on any failure nothing is left at ``uri``."""
    head = bytearray()
    while len(head) < SNIFF_BYTES:
        chunk = await part.read_chunk(READ_CHUNK)
        if not chunk:
            break
        head += chunk
    if len(head) > max_bytes:
        raise UploadTooLargeError(max_bytes)
    found = sniff(bytes(head[:SNIFF_BYTES]))
    if not found.is_audio:
        declared = part.headers.get(hdrs.CONTENT_TYPE, "none")
        raise ProblemError(
            415,
            "Unsupported Media Type",
            f"expected audio ({SUPPORTED}); received {found.kind} "
            f"(declared Content-Type: {declared})",
            slug="not-audio",
            extra={"received": found.kind},
        )

    digest = hashlib.sha256(head)
    size = len(head)
    pipe = ChunkPipe(PIPE_BUFFER)
    upload = asyncio.create_task(
        asyncio.to_thread(store.put_stream, uri, pipe, found.content_type.split(";")[0])
    )
    try:
        await _write(pipe, bytes(head))
        while chunk := await part.read_chunk(READ_CHUNK):
            size += len(chunk)
            _check_size(size, max_bytes)
            digest.update(chunk)
            await _write(pipe, chunk)
        pipe.close()
        await upload
    except BaseException:
        pipe.abort("the upload was stopped")
        with contextlib.suppress(UploadAbortedError, StorageError):
            await upload
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(store.delete, uri)
        raise
    return StoredUpload(uri, size, digest.hexdigest(), found.content_type)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise UploadTooLargeError(max_bytes)


async def _write(pipe: ChunkPipe, data: bytes) -> None:
    # Hop to a thread only when the pipe is full (S3 is slower than the client).
    if not pipe.try_write(data):
        await asyncio.to_thread(pipe.write, data)
