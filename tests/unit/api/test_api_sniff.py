from __future__ import annotations

import struct

import pytest

from producer_api.sniff import sniff
from tests.support.images import CANON_CR3_HEAD, HEIC_HEAD, HEIC_MIF1_HEAD, RED_AVIF


def _wav() -> bytes:
    return b"RIFF" + struct.pack("<I", 100) + b"WAVEfmt " + bytes(32)


@pytest.mark.parametrize(
    ("head", "kind", "content_type"),
    [
        (_wav(), "WAV audio", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "FLAC audio", "audio/flac"),
        (b"OggS\x00\x02" + bytes(22) + b"OpusHead", "Opus audio", "audio/ogg; codecs=opus"),
        (b"OggS\x00\x02" + bytes(22) + b"\x01vorbis", "Ogg audio", "audio/ogg"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "MP3 audio", "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + bytes(10), "MP3 audio", "audio/mpeg"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "AAC audio", "audio/aac"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "M4A audio", "audio/mp4"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "MP4 media", "video/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "WebM media", "video/webm"),
        (b"#!AMR\n\x3c", "AMR audio", "audio/amr"),
        (b"FORM\x00\x00\x00\x10AIFF", "AIFF audio", "audio/aiff"),
    ],
)
def test_audio_formats_are_recognised(head: bytes, kind: str, content_type: str) -> None:
    found = sniff(head)
    assert found.is_audio
    assert (found.kind, found.content_type) == (kind, content_type)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"", "an empty file"),
        (b"hello world\nthis is text\n", "plain text"),
        (b'  {"audio": 1}', "JSON text"),
        (b"<!DOCTYPE html><html>", "an HTML document"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"PK\x03\x04\x14\x00", "a ZIP archive"),
        (b"\x00\x01\x02\x03\xfe\xfd\xfc\xfb\x00", "unknown binary data starting 00 01 02 03"),
        # frame sync but layer bits 00 (reserved): not MP3, not ADTS
        (b"\xff\xe0\x00\x00\x00\x00\x00\x00", "unknown binary data"),
    ],
)
def test_other_content_is_named(head: bytes, kind: str) -> None:
    found = sniff(head)
    assert not found.is_audio
    assert found.kind.startswith(kind)


def test_text_cut_inside_a_character_is_still_text() -> None:
    text = ("é" * 3000).encode()[:4095]
    assert sniff(text).kind == "plain text"


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free"


@pytest.mark.parametrize(
    ("head", "kind", "content_type"),
    [
        # the ftyp boxes ffmpeg 6 writes (-f ipod, -f 3gp, -f mp4, -f mov)
        (_ftyp(b"M4A ", b"M4A ", b"isom", b"iso2"), "M4A audio", "audio/mp4"),
        (_ftyp(b"3gp4", b"3gp4", b"isom", b"iso2"), "3GPP media", "video/3gpp"),
        (_ftyp(b"isom", b"isom", b"iso2", b"mp41"), "MP4 media", "video/mp4"),
        (_ftyp(b"qt  ", b"qt  "), "QuickTime media", "video/quicktime"),
        # Apple's audiobooks, and an unknown major brand that declares MP4 compatibility
        (_ftyp(b"M4B ", b"M4B ", b"mp42", b"isom"), "M4A audio", "audio/mp4"),
        (_ftyp(b"XAVC", b"XAVC", b"mp42", b"iso2"), "MP4 media", "video/mp4"),
    ],
    ids=["m4a", "3gp", "mp4", "mov", "m4b", "xavc"],
)
def test_iso_media_with_audio_brands_passes(head: bytes, kind: str, content_type: str) -> None:
    found = sniff(head)
    assert found.is_audio
    assert (found.kind, found.content_type) == (kind, content_type)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (RED_AVIF.read_bytes(), "an AVIF image"),
        (HEIC_HEAD, "a HEIC image"),
        (HEIC_MIF1_HEAD, "a HEIC image"),
        (_ftyp(b"mif1", b"mif1", b"miaf"), "a HEIF image"),
        (_ftyp(b"avis", b"avis", b"msf1", b"miaf"), "an AVIF image"),
        (CANON_CR3_HEAD, "a Canon raw image (CR3)"),
        (_ftyp(b"zzzz", b"zzzz"), "an ISO media file of brand 'zzzz'"),
    ],
    ids=["avif", "heic", "heic-mif1", "heif", "avif-sequence", "cr3", "unknown-brand"],
)
def test_iso_images_and_unknown_brands_are_refused(head: bytes, kind: str) -> None:
    found = sniff(head)
    assert not found.is_audio
    assert found.kind.startswith(kind)
