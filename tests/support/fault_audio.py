"""Audio files for the fault tests: a long real-speech clip and a corrupt one."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

# fLaC magic (4 bytes), a metadata block header (4) and the STREAMINFO block (34)
FLAC_HEADER_BYTES = 42


def looped_speech(source: Path, destination: Path, seconds: float) -> Path:
    """`source` repeated end to end until it lasts `seconds`, as FLAC."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None, "ffmpeg is needed to build the test audio"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(source),
            "-t",
            f"{seconds:g}",
            "-c:a",
            "flac",
            str(destination),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return destination


def corrupt_flac(source: Path, destination: Path, size: int = 200_000, seed: int = 8) -> Path:
    """A real FLAC header followed by random bytes: the API's sniffing calls it FLAC."""
    header = source.read_bytes()[:FLAC_HEADER_BYTES]
    assert header[:4] == b"fLaC", f"{source} is not FLAC"
    garbage = random.Random(seed).randbytes(size)
    destination.write_bytes(header + garbage)
    return destination


def garbage_bytes(size: int = 512, seed: int = 9) -> bytes:
    """Bytes no decoder accepts: not Avro single-object, Confluent framing or JSON."""
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0x7F  # neither C3 (single-object), 00 (Confluent) nor '{' (JSON)
    return bytes(data)
