"""Large generated uploads: a WAV header followed by tone-like PCM, made on the fly."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import aiohttp

CHUNK = 256 * 1024


def wav_header(data_bytes: int, rate: int = 16000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def wav_bytes(total: int) -> AsyncIterator[bytes]:
    """``total`` bytes: a header, then repeating samples, in 256 KiB chunks."""
    header = wav_header(total - 44)
    pattern = bytes((i * 37) % 256 for i in range(CHUNK))
    yield header
    sent = len(header)
    while sent < total:
        chunk = pattern[: min(CHUNK, total - sent)]
        sent += len(chunk)
        yield chunk


def multipart_of(
    stream: AsyncIterator[bytes], filename: str = "big.wav"
) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(stream, {"Content-Type": "audio/wav"})
    part.set_content_disposition("form-data", name="file", filename=filename)
    return writer
