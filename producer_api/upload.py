"""Stream one multipart file field into S3: sniffed, size-limited, hashed on the way.

The body is read in chunks and handed to a worker thread running minio's multipart
upload through a bounded pipe, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath

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


MAX_SHOWN_FILENAME = 255


def shown_filename(name: str | None) -> str | None:
    """The client's file name as the job records and shows it: valid UTF-8 (aiohttp hands
    undecodable header bytes over as surrogates, which no event or JSON can carry), no
    control characters, at most 255 characters. The object key uses its own, stricter
    form (storage.keys.sanitise_filename)."""
    if name is None:
        return None
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in text)
    if len(text) > MAX_SHOWN_FILENAME:
        suffix = PurePosixPath(text).suffix[:16]
        text = text[: MAX_SHOWN_FILENAME - len(suffix)] + suffix
    return text
