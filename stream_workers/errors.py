"""Exceptions of the stream workers; everything raised here on purpose derives from WorkerError.

A job failure is either *transient* (worth a retry later) or *permanent* (retrying
cannot help: straight to the DLQ). The class says which, so the job runner never has
to guess from a message.
"""

from __future__ import annotations

from whisperstream.errors import WhisperstreamError


class WorkerError(WhisperstreamError):
    """Root of the stream workers' errors."""

    retryable: bool = False


class TransientJobError(WorkerError):
    """The job may succeed later: S3 or Kafka unavailable, out of memory, time limit."""

    retryable = True


class PermanentJobError(WorkerError):
    """The job can never succeed as requested; it goes to the DLQ."""

    retryable = False


class ModelNotInstalledError(PermanentJobError):
    """No source on this machine has the requested model, and nothing may be downloaded."""


class UnknownEngineError(PermanentJobError):
    """The request names an engine this worker does not have."""


class InvalidOptionsError(PermanentJobError):
    """The request's options cannot be honoured (bad language, beam size, task...)."""


class AudioUndecodableError(PermanentJobError):
    """The audio cannot be decoded, even after an ffmpeg repair attempt."""


class AudioMissingError(PermanentJobError):
    """The audio object named by the request does not exist."""


class AudioTooLongError(PermanentJobError):
    """The audio is longer than the hard time limit could ever allow."""


class StorageUnavailableError(TransientJobError):
    """S3 could not be reached or answered with a server error."""


class ModelOutOfMemoryError(TransientJobError):
    """Out of memory even with the smallest model of the family."""


class ModelUnusableError(TransientJobError):
    """The loaded model can no longer be used (its engine process died); the pool drops it."""


class TimeLimitExceededError(TransientJobError):
    """The job ran past its soft or hard time limit."""


class PoolTimeoutError(TransientJobError):
    """No model could be acquired from the pool in time."""


class JobCancelledError(WorkerError):
    """A cancel for the running job was seen; raised from the segment callback."""


class ConversionError(WorkerError):
    """A CTranslate2 model cannot be converted into an openai-whisper checkpoint."""


class WorkerStoppingError(WorkerError):
    """The worker is shutting down and takes no new jobs."""


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OOM, or a CTranslate2 allocation failure (a RuntimeError)."""
    if isinstance(exc, MemoryError | ModelOutOfMemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return "out of memory" in text or "failed to allocate" in text or "bad_alloc" in text
    return False
