"""What kind of file the first bytes of an upload are (magic numbers, no decoding)."""

from __future__ import annotations

from dataclasses import dataclass

from producer_api.sniff_iso import classify_ftyp

SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Sniffed:
    is_audio: bool
    kind: str
    """A short human name: 'WAV audio', 'PNG image', 'plain text', ..."""
    content_type: str


def sniff(head: bytes) -> Sniffed:
    """Classify ``head`` (the first bytes of a file, up to :data:`SNIFF_BYTES`)."""
    for check in (_audio, _other):
        found = check(head)
        if found is not None:
            return found
    if not head:
        return Sniffed(False, "an empty file", "application/octet-stream")
    if _looks_textual(head):
        return Sniffed(False, "plain text", "text/plain")
    return Sniffed(
        False, f"unknown binary data starting {head[:8].hex(' ')}", "application/octet-stream"
    )


def _audio(head: bytes) -> Sniffed | None:  # noqa: PLR0911 - one return per format
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed(True, "WAV audio", "audio/wav")
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return Sniffed(True, "RF64 WAV audio", "audio/wav")
    if head[:4] == b"fLaC":
        return Sniffed(True, "FLAC audio", "audio/flac")
    if head[:4] == b"OggS":
        if b"OpusHead" in head[:128]:
            return Sniffed(True, "Opus audio", "audio/ogg; codecs=opus")
        return Sniffed(True, "Ogg audio", "audio/ogg")
    if head[:3] == b"ID3" or _mpeg_frame(head):
        return Sniffed(True, "MP3 audio", "audio/mpeg")
    if _adts(head):
        return Sniffed(True, "AAC audio", "audio/aac")
    if head[4:8] == b"ftyp":  # also the container of HEIC and AVIF images: not always audio
        return Sniffed(*classify_ftyp(head))
    if head[:4] == b"\x1a\x45\xdf\xa3":
        if b"webm" in head[:64]:
            return Sniffed(True, "WebM media", "video/webm")
        return Sniffed(True, "Matroska media", "video/x-matroska")
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return Sniffed(True, "AMR audio", "audio/amr")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed(True, "AIFF audio", "audio/aiff")
    return None


def _mpeg_frame(head: bytes) -> bool:
    # frame sync (11 bits), MPEG version not reserved, layer III, bitrate index valid
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    return version != 1 and layer == 1 and bitrate not in (0, 15)


def _adts(head: bytes) -> bool:
    return len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


_OTHER_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "image/png"),
    (b"\xff\xd8\xff", "a JPEG image", "image/jpeg"),
    (b"GIF8", "a GIF image", "image/gif"),
    (b"%PDF", "a PDF document", "application/pdf"),
    (b"PK\x03\x04", "a ZIP archive", "application/zip"),
    (b"\x1f\x8b", "gzip data", "application/gzip"),
    (b"\x7fELF", "an ELF executable", "application/x-executable"),
)


def _other(head: bytes) -> Sniffed | None:
    for magic, kind, content_type in _OTHER_MAGIC:
        if head.startswith(magic):
            return Sniffed(False, kind, content_type)
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"[") and _looks_textual(head):
        return Sniffed(False, "JSON text", "application/json")
    if stripped[:5].lower() in (b"<!doc", b"<html") and _looks_textual(head):
        return Sniffed(False, "an HTML document", "text/html")
    return None


def _looks_textual(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # the cut at SNIFF_BYTES may split a character
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
