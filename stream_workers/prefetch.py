"""Fetching a waiting job's audio while the running jobs transcribe.

A job that has to wait for a slot gets its audio downloaded (and, when short enough,
decoded) in the background, so that when the slot frees the engine can start at once
instead of waiting for S3 and the decoder: I/O overlaps compute. At most `limit` jobs
waiting for a slot have audio fetched ahead (the slot count by default), each bounded in
memory by `decode_max_s`; longer audio is only downloaded ahead and decoded when its
job starts.

A prefetch is only an optimisation: when it fails (S3 hiccup, undecodable audio) the
job fetches and decodes its audio itself when it starts, through the same code that
classifies the error, so nothing is lost or reported twice.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from storage.errors import StorageError
from storage.keys import S3Uri
from stream_workers import audio
from stream_workers.errors import WorkerError
from stream_workers.ports import ObjectStorage

log = logging.getLogger(__name__)


def audio_file_name(source: S3Uri) -> str:
    """The local name of a job's downloaded audio: its extension helps the demuxer."""
    return "audio" + PurePosixPath(source.key).suffix[:16]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A job's audio on local disk, decoded unless it was too long to decode ahead."""

    path: Path
    decoded: audio.DecodedAudio | None


class Prefetch:
    """One waiting job's audio on its way; `close()` it whatever happens to the job."""

    def __init__(self, folder: Path, task: asyncio.Task[Fetched], done: Callable[[], None]) -> None:
        self.folder = folder
        self._task = task
        self._done = done
        self._counted = True
        self._closed = False

    def started(self) -> None:
        """The job got its slot: its audio is the running job's now and no longer counts
        against the limit of audio fetched ahead for waiting jobs."""
        self._uncount()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._done()

    async def result(self) -> Fetched | None:
        """The prefetched audio, or None when the prefetch failed (the job fetches it then)."""
        try:
            return await self._task
        except (StorageError, WorkerError, OSError) as exc:
            log.info(
                "prefetch into %s failed (%s: %s); the job fetches its audio itself",
                self.folder,
                type(exc).__name__,
                exc,
            )
            return None

    def close(self) -> None:
        """Remove the audio once the fetch has stopped (a download thread cannot be cut)."""
        if self._closed:
            return
        self._closed = True
        if self._task.done():
            self._cleanup(self._task)
        else:
            self._task.add_done_callback(self._cleanup)

    def _cleanup(self, task: asyncio.Task[Fetched]) -> None:
        if not task.cancelled():
            task.exception()  # seen here when nobody awaited it; reported by `result`
        shutil.rmtree(self.folder, ignore_errors=True)
        self._uncount()


class Prefetcher:
    def __init__(
        self, store: ObjectStorage, workdir: Path, *, limit: int, decode_max_s: float
    ) -> None:
        self._store = store
        self._workdir = workdir
        self._limit = limit
        self._decode_max_s = decode_max_s
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def start(self, uri: S3Uri, max_seconds: float) -> Prefetch | None:
        """Begin fetching `uri`; None when `limit` prefetches are already under way."""
        if self._active >= self._limit:
            return None
        self._active += 1
        folder = Path(tempfile.mkdtemp(dir=self._workdir, prefix="prefetch-"))
        task = asyncio.ensure_future(self._fetch(uri, folder, max_seconds))
        return Prefetch(folder, task, self._finished)

    def _finished(self) -> None:
        self._active -= 1

    async def _fetch(self, uri: S3Uri, folder: Path, max_seconds: float) -> Fetched:
        path = folder / audio_file_name(uri)
        await asyncio.to_thread(self._store.download_to, uri, path)
        declared = await asyncio.to_thread(audio.header_duration, path)
        if declared is None or declared > self._decode_max_s:
            return Fetched(path, None)  # decoded when the job starts, not held in memory now
        decoded = await asyncio.to_thread(audio.prepare, path, folder, max_seconds)
        return Fetched(path, decoded)
