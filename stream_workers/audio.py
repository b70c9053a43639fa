"""Audio checks before transcription: probe the duration, repair with ffmpeg when needed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from stream_workers.errors import AudioUndecodableError

_PROBE_TIMEOUT_S = 60.0
_REPAIR_TIMEOUT_S = 600.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioUndecodableError(f"{name} is not installed; it is needed to read audio")
    return path


def probe_duration(path: Path) -> float | None:
    """The audio stream's duration in seconds, or None when ffprobe cannot decode it."""
    try:
        done = subprocess.run(
            [
                _tool("ffprobe"),
                "-v",
                "error",
                "-select_streams",
                "a:0",
                "-show_entries",
                "stream=duration:format=duration",
                "-of",
                "json",
                str(path),
            ],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    info = json.loads(done.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        return None
    for raw in (streams[0].get("duration"), info.get("format", {}).get("duration")):
        if raw not in (None, "N/A"):
            return float(raw)
    return _decoded_duration(path)


def _decoded_duration(path: Path) -> float | None:
    """Decode the whole stream to count its length (containers without a duration header)."""
    done = subprocess.run(
        [
            _tool("ffmpeg"),
            "-v",
            "error",
            "-i",
            str(path),
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-",
        ],
        capture_output=True,
        timeout=_REPAIR_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not done.stdout:
        return None
    return len(done.stdout) / 2 / 16000


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
                "16000",
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


def prepare(path: Path, workdir: Path) -> tuple[Path, float]:
    """The audio to transcribe and its duration; a repaired copy when the original fails."""
    duration = probe_duration(path)
    if duration is not None and duration > 0:
        return path, duration
    repaired = repair(path, workdir / "repaired.wav")
    duration = probe_duration(repaired)
    if duration is None or duration <= 0:
        raise AudioUndecodableError("audio undecodable even after ffmpeg repair: no samples")
    return repaired, duration
