"""A bounded, thread-safe byte pipe: one thread writes chunks, another reads them.

It lets a streaming upload (minio's ``put_object`` with an unknown length, running in a
worker thread) read from a producer that receives the bytes elsewhere, for example an
HTTP request body, while at most ``max_buffered`` bytes wait in between.
"""

from __future__ import annotations

import threading
from collections import deque

from storage.errors import UploadAbortedError


class ChunkPipe:
    def __init__(self, max_buffered: int = 4 * 1024 * 1024) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be positive, got {max_buffered}")
        self._max = max_buffered
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._closed = False
        self._abort_reason: str | None = None
        self._cond = threading.Condition()

    @property
    def buffered(self) -> int:
        return self._buffered

    def write(self, data: bytes) -> None:
        """Queue ``data``; blocks while the pipe is full. Raises after :meth:`abort`."""
        if not data:
            return
        with self._cond:
            if self._closed:
                raise ValueError("write to a closed pipe")
            # One chunk larger than the bound still goes in once the pipe is empty.
            while self._buffered > 0 and self._buffered + len(data) > self._max:
                self._raise_if_aborted()
                self._cond.wait()
            self._raise_if_aborted()
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
            self._cond.notify_all()

    def try_write(self, data: bytes) -> bool:
        """Queue ``data`` if it fits now (or the pipe is empty); False if it would block."""
        with self._cond:
            if self._closed:
                raise ValueError("write to a closed pipe")
            self._raise_if_aborted()
            if self._buffered > 0 and self._buffered + len(data) > self._max:
                return False
            if data:
                self._chunks.append(memoryview(data))
                self._buffered += len(data)
                self._cond.notify_all()
            return True

    def close(self) -> None:
        """No more data: readers get the rest and then EOF."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self, reason: str) -> None:
        """Make the reader (and any blocked writer) raise UploadAbortedError."""
        with self._cond:
            self._abort_reason = reason
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes, fewer only at EOF (``-1``: everything until EOF).

        Waiting for the whole ``size`` (as a buffered file does) lets minio read a part
        in one call instead of concatenating many small chunks."""
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        got = 0
        with self._cond:
            while wanted is None or got < wanted:
                self._raise_if_aborted()
                if not self._chunks:
                    if self._closed:
                        break
                    self._cond.wait()
                    continue
                chunk = self._chunks[0]
                take = len(chunk) if wanted is None else min(len(chunk), wanted - got)
                parts.append(bytes(chunk[:take]))
                if take == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[take:]
                self._buffered -= take
                got += take
                self._cond.notify_all()
        return b"".join(parts)

    def _raise_if_aborted(self) -> None:
        if self._abort_reason is not None:
            raise UploadAbortedError(self._abort_reason)
