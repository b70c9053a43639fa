from __future__ import annotations

import pytest

from storage.errors import InvalidS3UriError
from storage.keys import S3Uri, audio_key, result_key, sanitise_filename


def test_uri_round_trips() -> None:
    uri = S3Uri.parse("s3://audio/uploads/abc/file name.wav")
    assert uri == S3Uri("audio", "uploads/abc/file name.wav")
    assert str(uri) == "s3://audio/uploads/abc/file name.wav"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://audio/key", "must start with s3://"),
        ("s3://", "bucket is missing"),
        ("s3:///key", "bucket is missing"),
        ("s3://audio", "key is missing"),
        ("s3://audio/", "key is missing"),
        ("s3://Bad_Bucket/key", "bucket must be"),
        ("s3://ab/key", "bucket must be"),
    ],
)
def test_bad_uris_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidS3UriError, match=reason) as caught:
        S3Uri.parse(text)
    assert caught.value.uri.startswith(text[:5])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("talk.wav", "talk.wav"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\My Talk.mp3", "My_Talk.mp3"),
        ("..", "audio"),
        (".hidden.flac", "hidden.flac"),
        ("", "audio"),
        (None, "audio"),
        ("café résumé.ogg", "cafe_resume.ogg"),
        ("日本語.wav", "wav"),
        ("a/b/", "audio"),
    ],
)
def test_sanitise_filename(name: str | None, expected: str) -> None:
    assert sanitise_filename(name) == expected


def test_long_filenames_keep_their_extension() -> None:
    cleaned = sanitise_filename("x" * 500 + ".flac")
    assert len(cleaned) == 200
    assert cleaned.endswith(".flac")


def test_layout() -> None:
    assert audio_key("j1", "../a b.wav") == "uploads/j1/a_b.wav"
    assert result_key("j1") == "j1.json"
