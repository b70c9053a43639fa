"""A loaded model that lives in a child process, where its engine runs on the main thread.

openai-whisper decodes token by token in Python, between many small PyTorch operations.
Inside the worker it shares the interpreter with the asyncio loop, Faust's consumer
thread and the Kafka client threads: every time one of them wakes it takes the GIL from
the decoder, and the PyTorch thread team waits. Measured with 20 clips of 31 s, that
kept openai-whisper in the worker well short of the same model in a plain loop. A child
process per loaded model gives the engine an interpreter of its own; the worker's thread
only waits on a pipe.

The child speaks a small request/reply protocol over a duplex pipe. After each segment
(or window) it reports progress and waits for "continue" or "stop", so a cancel or a
soft time limit, raised from the parent's callback, takes effect at the same point as
with an in-process engine. A child that dies (killed, out of memory) makes the model
unusable: the pool drops it and the job is retried.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from stream_workers.engines.base import (
    ModelKey,
    Samples,
    SegmentCallback,
    Transcriber,
    TranscribeRequest,
    TranscriptResult,
)
from stream_workers.engines.windows import WindowTranscript
from stream_workers.errors import ModelUnusableError

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything a child needs to load the model itself (it must pickle)."""

    key: ModelKey
    path: Path
    device: str
    cpu_threads: int
    batch_size: int


def open_transcriber(spec: EngineSpec) -> Transcriber:
    """Load the model in this process."""
    # Imported here: the parent must not pay for (or initialise) the engines it runs remotely.
    from stream_workers.engines import faster, openai  # noqa: PLC0415

    if spec.key.engine == "faster-whisper":
        return faster.FasterWhisperTranscriber(
            spec.key,
            spec.path,
            device=spec.device,
            cpu_threads=spec.cpu_threads,
            batch_size=spec.batch_size,
        )
    return openai.OpenAIWhisperTranscriber(
        spec.key, spec.path, device=spec.device, cpu_threads=spec.cpu_threads
    )


class _StopRequestedError(Exception):
    """Raised inside the child's engine when the parent's callback said stop."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError with its text; with the
    child's traceback attached as a note either way."""
    note = "in the engine process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        copy: BaseException = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    except Exception:  # noqa: BLE001 - any pickling failure: fall back to the text
        copy = RuntimeError(f"{type(exc).__name__}: {exc}")
    copy.add_note(note)
    return copy


def _serve(conn: Connection, spec: EngineSpec) -> None:
    """The child's main loop: load, then transcribe on request until told to close."""
    # Ctrl-C reaches the whole process group; the worker decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model = open_transcriber(spec)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the worker
        conn.send(("failed", _portable(exc)))
        conn.close()
        return
    conn.send(("ready",))

    def report(done: float, total: float) -> None:
        conn.send(("progress", done, total))
        # Anything but "continue" stops the job: a "close" from a worker shutting down too.
        if conn.recv()[0] != "continue":
            raise _StopRequestedError

    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return  # the worker is gone
            if message[0] == "close":
                return
            if message[0] == "windows":
                _, windows, request = message
                try:
                    transcripts = model.transcribe_windows(windows, request)
                except Exception as exc:  # noqa: BLE001 - reported to the worker, which raises it
                    conn.send(("failed", _portable(exc)))
                else:
                    conn.send(("done", transcripts))
                continue
            _, samples, request = message
            try:
                result = model.transcribe(samples, request, report)
            except _StopRequestedError:
                conn.send(("stopped",))
            except Exception as exc:  # noqa: BLE001 - reported to the worker, which raises it
                conn.send(("failed", _portable(exc)))
            else:
                conn.send(("done", result))
    finally:
        model.close()
        conn.close()


class ProcessTranscriber:
    """:class:`Transcriber` whose model is loaded and run by a child process of its own."""

    def __init__(self, spec: EngineSpec) -> None:
        self.key = spec.key
        context = multiprocessing.get_context("spawn")  # forking a threaded worker is unsafe
        self._conn, child_end = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_serve,
            args=(child_end, spec),
            name=f"engine {spec.key}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._broken = False
        try:
            reply = self._receive()
        except BaseException:
            self.close()
            raise
        if reply[0] == "failed":
            self.close()
            raise reply[1]
        log.info("engine process %d serves %s", self._process.pid, spec.key)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult:
        if self._broken:
            raise ModelUnusableError(f"the engine process of {self.key} is gone")
        self._send(("transcribe", audio, request))
        stopping: BaseException | None = None
        while True:
            reply = self._receive()
            kind = reply[0]
            if kind == "progress":
                if stopping is None:
                    try:
                        on_segment(reply[1], reply[2])
                    except Exception as exc:  # noqa: BLE001 - re-raised once the child stopped
                        stopping = exc
                self._send(("stop",) if stopping is not None else ("continue",))
            elif stopping is not None and kind in ("stopped", "done", "failed"):
                raise stopping
            elif kind == "done":
                result: TranscriptResult = reply[1]
                return result
            elif kind == "failed":
                raise reply[1]
            else:
                self._broken = True
                raise ModelUnusableError(f"engine process of {self.key} answered {kind!r}")

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        """Decode `windows` together in the child (one batched call, no progress within)."""
        if self._broken:
            raise ModelUnusableError(f"the engine process of {self.key} is gone")
        self._send(("windows", list(windows), request))
        reply = self._receive()
        if reply[0] == "done":
            transcripts: list[WindowTranscript] = reply[1]
            return transcripts
        if reply[0] == "failed":
            raise reply[1]
        self._broken = True
        raise ModelUnusableError(f"engine process of {self.key} answered {reply[0]!r}")

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):  # it may be gone already
                self._conn.send(("close",))
            self._process.join(_CLOSE_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn.close()
        self._process.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self._conn.send(message)
        except OSError as exc:
            raise self._died() from exc

    def _receive(self) -> tuple[Any, ...]:
        try:
            reply: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc
        return reply

    def _died(self) -> ModelUnusableError:
        self._broken = True
        self._process.join(1.0)
        code = self._process.exitcode
        return ModelUnusableError(
            f"the engine process of {self.key} died (exit code {code}); the job is retried"
        )
