"""Audio for the engines: decoded once, in process, to 16 kHz mono float32 samples.

Both engines take the decoded samples, so a job decodes its audio exactly once (no
ffprobe subprocess, no second decode inside the engine). PyAV (FFmpeg's libraries,
already a faster-whisper dependency) decodes; frames FFmpeg reports as invalid are
skipped. When nothing decodes, the `ffmpeg` command re-encodes whatever it can
salvage, and that copy is decoded instead; when that fails too the audio is
undecodable for good.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from stream_workers.engines.base import SAMPLE_RATE, Samples
from stream_workers.errors import AudioTooLongError, AudioUndecodableError

_REPAIR_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: Samples
    repaired: bool = False

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioUndecodableError(f"{name} is not installed; it is needed to repair audio")
    return path


def header_duration(path: Path) -> float | None:
    """The duration the container declares, without decoding; None when unknown or unreadable."""
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


def _valid_frames(container: av.container.InputContainer) -> Iterator[av.AudioFrame]:
    frames = container.decode(audio=0)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue  # a damaged packet: skip it, as the ffmpeg command does
        frame.pts = None  # the resampler needs no timestamps; damaged files have odd ones
        yield frame


def decode(path: Path, max_seconds: float) -> Samples:
    """All samples of the first audio stream, resampled to 16 kHz mono float32.

    Raises AudioUndecodableError when FFmpeg cannot open or decode it and
    AudioTooLongError as soon as more than `max_seconds` have been decoded.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    count = 0
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioUndecodableError("the file has no audio stream")
            # s16 as both engines' own loaders produce it, so results match theirs exactly
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in itertools.chain(_valid_frames(container), [None]):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    count += len(chunk)
                    if count > limit:
                        raise AudioTooLongError(
                            f"audio is over MAX_AUDIO_DURATION_S={max_seconds:.0f}s"
                        )
                    chunks.append(chunk)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioUndecodableError(f"audio undecodable: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    pcm = np.concatenate(chunks)
    samples: Samples = pcm.astype(np.float32)
    samples /= 32768.0
    return samples


def repair(path: Path, destination: Path) -> Path:
    """Re-encode whatever ffmpeg can salvage to 16 kHz mono WAV, ignoring decode errors."""
    try:
        done = subprocess.run(
            [
                _tool("ffmpeg"),
                "-v",
                "error",
                "-y",
                "-err_detect",
                "ignore_err",
                "-fflags",
                "+discardcorrupt",
                "-i",
                str(path),
                "-vn",
                "-ac",
                "1",
                "-ar",
                str(SAMPLE_RATE),
                "-c:a",
                "pcm_s16le",
                str(destination),
            ],
            capture_output=True,
            timeout=_REPAIR_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AudioUndecodableError(f"ffmpeg repair of {path.name} timed out") from exc
    if done.returncode != 0 or not destination.exists() or destination.stat().st_size <= 44:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no audio"]
        raise AudioUndecodableError(f"audio undecodable even after ffmpeg repair: {reason[0]}")
    return destination


def prepare(path: Path, workdir: Path, max_seconds: float) -> DecodedAudio:
    """The decoded audio of `path`, from a repaired copy when the original yields nothing.

    Audio whose header already declares more than `max_seconds` is refused before any
    decoding; audio without a truthful header is refused once decoding passes the limit.
    """
    declared = header_duration(path)
    if declared is not None and declared > max_seconds:
        raise AudioTooLongError(
            f"audio is {declared:.0f}s, over MAX_AUDIO_DURATION_S={max_seconds:.0f}"
        )
    try:
        samples = decode(path, max_seconds)
    except AudioTooLongError:
        raise
    except AudioUndecodableError:
        samples = None
    if samples is not None and len(samples) > 0:
        return DecodedAudio(samples)
    repaired = repair(path, workdir / "repaired.wav")
    try:
        samples = decode(repaired, max_seconds)
    except AudioUndecodableError as exc:
        raise AudioUndecodableError(f"audio undecodable even after ffmpeg repair: {exc}") from exc
    if len(samples) == 0:
        raise AudioUndecodableError("audio undecodable even after ffmpeg repair: no samples")
    return DecodedAudio(samples, repaired=True)
