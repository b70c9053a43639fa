"""The `ObjectStorage` port: the unit tests' `MemoryStore` and the real S3 `ObjectStore`
(SeaweedFS of the local stack) keep one contract; every test runs against both."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from storage.errors import ObjectNotFoundError
from storage.keys import S3Uri
from storage.s3 import ObjectStore
from stream_workers.ports import ObjectStorage
from tests.support.fakes import MemoryStore
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration


class Store(ObjectStorage, Protocol):
    """The port plus the writes a test needs to put audio in place."""

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = ...) -> object: ...

    def delete(self, uri: S3Uri) -> None: ...


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    settings: Settings = request.getfixturevalue("stack_settings")
    with ObjectStore.from_settings(settings) as real:
        yield real


@pytest.fixture
def uri() -> S3Uri:
    """A key nobody has written yet, in a bucket the stack creates."""
    return S3Uri("audio", f"contract/{uuid.uuid4()}/clip.flac")


def test_download_writes_the_stored_bytes_to_the_path(
    store: Store, uri: S3Uri, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 40
    store.put_bytes(uri, data, "audio/flac")
    target = tmp_path / "clip.flac"
    assert store.download_to(uri, target) == target
    assert target.read_bytes() == data
    assert store.exists(uri)


def test_download_replaces_what_the_path_held(store: Store, uri: S3Uri, tmp_path: Path) -> None:
    store.put_bytes(uri, b"new")
    target = tmp_path / "clip.flac"
    target.write_bytes(b"an older, longer file")
    store.download_to(uri, target)
    assert target.read_bytes() == b"new"


def test_a_missing_object_is_not_found_and_leaves_no_file(
    store: Store, uri: S3Uri, tmp_path: Path
) -> None:
    target = tmp_path / "clip.flac"
    assert not store.exists(uri)
    with pytest.raises(ObjectNotFoundError):
        store.download_to(uri, target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ObjectNotFoundError):
        store.get_json(uri)


def test_a_missing_bucket_is_not_found(store: Store, tmp_path: Path) -> None:
    uri = S3Uri(f"no-such-bucket-{uuid.uuid4().hex[:8]}", "a.json")
    assert not store.exists(uri)
    with pytest.raises(ObjectNotFoundError):
        store.download_to(uri, tmp_path / "a.json")


def test_a_deleted_object_is_gone_and_deleting_again_is_no_error(store: Store, uri: S3Uri) -> None:
    store.put_bytes(uri, b"x")
    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)


def test_json_comes_back_as_json_not_as_the_object_put(store: Store, uri: S3Uri) -> None:
    document = {"segments": ((0, 1.5), (1, 3.0)), 7: "seven", "text": "Ask not — ¿qué?"}
    store.put_json(uri, document)
    assert store.exists(uri)
    assert store.get_json(uri) == {
        "segments": [[0, 1.5], [1, 3.0]],
        "7": "seven",
        "text": "Ask not — ¿qué?",
    }


def test_json_put_again_replaces_the_document(store: Store, uri: S3Uri) -> None:
    store.put_json(uri, {"version": 1})
    store.put_json(uri, {"version": 2})
    assert store.get_json(uri) == {"version": 2}


def test_what_is_not_json_is_refused_and_nothing_is_stored(store: Store, uri: S3Uri) -> None:
    with pytest.raises(TypeError):
        store.put_json(uri, {"when": object()})
    assert not store.exists(uri)


def test_json_over_the_size_limit_is_refused(store: Store, uri: S3Uri) -> None:
    store.put_json(uri, {"text": "x" * 100})
    with pytest.raises(ValueError, match="over the limit"):
        store.get_json(uri, max_bytes=50)
    assert store.get_json(uri, max_bytes=1000) == {"text": "x" * 100}


def test_bytes_that_are_not_json_fail_to_read_as_json(store: Store, uri: S3Uri) -> None:
    store.put_bytes(uri, b"fLaC\x00\x00")
    with pytest.raises(json.JSONDecodeError):
        store.get_json(uri)
