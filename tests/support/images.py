"""Images in the ISO base media file format (the container of MP4 and M4A audio too).

HEIF (HEIC) and AVIF images open with the same ``ftyp`` box as an MP4 file; only the
brands inside it tell them apart. These are the openings the upload sniffer must refuse.
"""

from __future__ import annotations

from pathlib import Path

RED_AVIF = Path(__file__).resolve().parents[1] / "data" / "red.avif"
"""A whole 16x16 AVIF still image, made with ffmpeg 6 (libaom-av1, ``-still-picture 1``)."""


def _box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def _full_box(kind: bytes, body: bytes) -> bytes:
    return _box(kind, b"\x00\x00\x00\x00" + body)  # version 0, flags 0


_PICTURE_HANDLER = _full_box(b"hdlr", bytes(4) + b"pict" + bytes(12) + b"\x00")


def heif_head(major: bytes, *compatible: bytes) -> bytes:
    """The opening of a HEIF file: ``ftyp``, then a ``meta`` box whose handler is 'pict'."""
    ftyp = _box(b"ftyp", major + bytes(4) + b"".join(compatible))
    return ftyp + _full_box(b"meta", _PICTURE_HANDLER)


HEIC_HEAD = heif_head(b"heic", b"mif1", b"heic")
"""As an iPhone camera writes it (major brand 'heic')."""

HEIC_MIF1_HEAD = heif_head(b"mif1", b"mif1", b"heic")
"""As libheif writes it (major brand 'mif1', HEVC named among the compatible brands)."""

CANON_CR3_HEAD = _box(b"ftyp", b"crx " + b"\x00\x00\x00\x01" + b"crx isom") + _box(b"moov", b"")
"""A Canon raw image (CR3): its compatible brands include the generic 'isom'."""
