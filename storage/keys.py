"""The storage layout (docs/architecture.md) and ``s3://bucket/key`` URIs."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath

from storage.errors import InvalidS3UriError

SCHEME = "s3://"
MAX_FILENAME_LENGTH = 200
DEFAULT_FILENAME = "audio"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class S3Uri:
    bucket: str
    key: str

    def __post_init__(self) -> None:
        if not _BUCKET_RE.match(self.bucket) or ".." in self.bucket:
            raise InvalidS3UriError(
                f"{SCHEME}{self.bucket}/{self.key}",
                "the bucket must be 3-63 lower-case letters, digits, dots or hyphens",
            )
        if not self.key:
            raise InvalidS3UriError(f"{SCHEME}{self.bucket}/", "the key is empty")
        if len(self.key.encode("utf-8")) > 1024:
            raise InvalidS3UriError(f"{SCHEME}{self.bucket}/...", "the key is over 1024 bytes")

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith(SCHEME):
            raise InvalidS3UriError(uri, "it must start with s3://")
        bucket, sep, key = uri[len(SCHEME) :].partition("/")
        if not bucket:
            raise InvalidS3UriError(uri, "the bucket is missing")
        if not sep or not key:
            raise InvalidS3UriError(uri, "the key is missing")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def sanitise_filename(name: str | None) -> str:
    """A file name that is safe as the last part of an object key.

    Any directory part (``/`` or ``\\``) is dropped, the name is reduced to ASCII letters,
    digits, ``.``, ``_`` and ``-``, leading dots are removed (no hidden or ``..`` names),
    and it is shortened to 200 characters keeping the extension.
    """
    if not name:
        return DEFAULT_FILENAME
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE_RE.sub("_", ascii_name).lstrip(".").strip("_")
    if not cleaned or set(cleaned) <= {"."}:
        return DEFAULT_FILENAME
    if len(cleaned) > MAX_FILENAME_LENGTH:
        suffix = PurePosixPath(cleaned).suffix[:16]
        cleaned = cleaned[: MAX_FILENAME_LENGTH - len(suffix)] + suffix
    return cleaned


def audio_key(job_id: str, original_filename: str | None) -> str:
    return f"uploads/{job_id}/{sanitise_filename(original_filename)}"


def result_key(job_id: str) -> str:
    return f"{job_id}.json"


def audio_uri(bucket: str, job_id: str, original_filename: str | None) -> S3Uri:
    return S3Uri(bucket, audio_key(job_id, original_filename))


def result_uri(bucket: str, job_id: str) -> S3Uri:
    return S3Uri(bucket, result_key(job_id))
