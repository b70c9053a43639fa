"""Test audio made from real speech with ffmpeg, and a word error rate to judge transcripts."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

JFK_REFERENCE = (
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
JFK_FLAC = Path(__file__).resolve().parents[1] / "data" / "jfk.flac"
"""11 s of real speech shipped with the tests (origin in `tests/data/README.md`)."""
JFK_SECONDS = 11.0
"""Length of `JFK_FLAC`."""

_FFMPEG_TIMEOUT_S = 120


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed (the Makefile's setup installs ffmpeg; "
            "apt-get install espeak-ng for synthetic speech)"
        )
    return path


def _ffmpeg(*args: str) -> None:
    command = [_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=_FFMPEG_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr.strip()}")


def _ffmpeg_to_mono_16k(*args: str, destination: Path) -> Path:
    """Run ffmpeg with ``args`` and write 16 kHz mono audio to ``destination``."""
    _ffmpeg(*args, "-ac", "1", "-ar", "16000", str(destination))
    return destination


def cut(source: Path, destination: Path, start_s: float, duration_s: float) -> Path:
    """`duration_s` seconds of `source` from `start_s`, written as 16 kHz mono FLAC."""
    return _ffmpeg_to_mono_16k(
        "-ss",
        f"{start_s:.3f}",
        "-t",
        f"{duration_s:.3f}",
        "-i",
        str(source),
        destination=destination,
    )


def repeat(source: Path, destination: Path, times: int) -> Path:
    """`source` played `times` times back to back (real speech of `times` x its length)."""
    if times < 1:
        raise ValueError("times must be at least 1")
    return _ffmpeg_to_mono_16k(
        "-stream_loop",
        str(times - 1),
        "-i",
        str(source),
        destination=destination,
    )


def speak(text: str, destination: Path, *, words_per_minute: int = 165) -> Path:
    """`text` read by espeak-ng (US English), written as 16 kHz mono to `destination`."""
    spoken = destination.with_name(destination.stem + ".espeak.wav")
    result = subprocess.run(
        [_tool("espeak-ng"), "-v", "en-us", "-s", str(words_per_minute), "-w", str(spoken), text],
        capture_output=True,
        text=True,
        timeout=_FFMPEG_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({result.returncode}): {result.stderr.strip()}")
    try:
        return _ffmpeg_to_mono_16k("-i", str(spoken), destination=destination)
    finally:
        spoken.unlink(missing_ok=True)


def duration_s(path: Path) -> float:
    """The length of an audio file in seconds, as ffprobe reads it."""
    result = subprocess.run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=_FFMPEG_TIMEOUT_S,
        check=True,
    )
    return float(result.stdout.strip())


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes inside words are kept)."""
    lowered = text.lower().replace("\u2019", "'")
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", lowered)


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance over words: substitutions, deletions and insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of `hypothesis` against `reference`, both normalised first."""
    ref = normalise(reference)
    if not ref:
        raise ValueError("the reference has no words")
    return edit_distance(ref, normalise(hypothesis)) / len(ref)
