from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from storage.errors import ObjectNotFoundError, StorageUnavailableError, UploadAbortedError
from storage.keys import S3Uri, audio_uri, result_uri
from storage.pipe import ChunkPipe
from storage.s3 import MIN_PART_SIZE, ObjectStore
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def store(stack_settings: Settings) -> Iterator[ObjectStore]:
    with ObjectStore.from_settings(stack_settings) as object_store:
        yield object_store


def _job() -> str:
    return str(uuid.uuid4())


def test_bytes_and_json_round_trip(store: ObjectStore, stack_settings: Settings) -> None:
    uri = audio_uri(stack_settings.audio_bucket, _job(), "talk.wav")
    store.put_bytes(uri, b"RIFF1234", "audio/wav")
    info = store.stat(uri)
    assert (info.size, info.content_type) == (8, "audio/wav")
    assert store.get_bytes(uri) == b"RIFF1234"
    with pytest.raises(ValueError, match="over the limit"):
        store.get_bytes(uri, max_bytes=4)

    doc_uri = result_uri(stack_settings.results_bucket, _job())
    store.put_json(doc_uri, {"segments": [], "language": "en", "text": "é"})
    assert store.get_json(doc_uri) == {"segments": [], "language": "en", "text": "é"}


def test_missing_objects(store: ObjectStore, stack_settings: Settings) -> None:
    uri = S3Uri(stack_settings.audio_bucket, f"uploads/{_job()}/none.wav")
    assert not store.exists(uri)
    with pytest.raises(ObjectNotFoundError, match=r"none\.wav"):
        store.stat(uri)
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(uri)
    store.delete(uri)  # deleting nothing is fine
    assert not store.bucket_exists("no-such-bucket-here")
    with pytest.raises(ObjectNotFoundError):
        store.stat(S3Uri("no-such-bucket-here", "k"))


def test_delete_download_and_presigned(
    store: ObjectStore, stack_settings: Settings, tmp_path: Path
) -> None:
    uri = audio_uri(stack_settings.audio_bucket, _job(), "a.flac")
    store.put_bytes(uri, b"fLaC" + b"\x00" * 100)
    target = store.download_to(uri, tmp_path / "copy.flac")
    assert target.read_bytes() == b"fLaC" + b"\x00" * 100

    url = store.presigned_get_url(uri)
    http = urllib3.PoolManager()
    try:
        response = http.request("GET", url)
        assert response.status == 200
        assert response.data.startswith(b"fLaC")
    finally:
        http.clear()

    store.delete(uri)
    assert not store.exists(uri)


def test_streaming_multipart_upload(store: ObjectStore, stack_settings: Settings) -> None:
    uri = audio_uri(stack_settings.audio_bucket, _job(), "big.wav")
    pipe = ChunkPipe(max_buffered=1 << 20)
    total = 2 * MIN_PART_SIZE + 12345
    digest = hashlib.sha256()

    def produce() -> None:
        sent = 0
        index = 0
        while sent < total:
            chunk = bytes([index % 251]) * min(65536, total - sent)
            digest.update(chunk)
            pipe.write(chunk)
            sent += len(chunk)
            index += 1
        pipe.close()

    thread = threading.Thread(target=produce)
    thread.start()
    store.put_stream(uri, pipe, "audio/wav")
    thread.join()
    assert store.stat(uri).size == total
    assert hashlib.sha256(store.get_bytes(uri)).hexdigest() == digest.hexdigest()
    store.delete(uri)


def test_aborted_stream_leaves_no_object(store: ObjectStore, stack_settings: Settings) -> None:
    uri = audio_uri(stack_settings.audio_bucket, _job(), "cut.wav")
    pipe = ChunkPipe(max_buffered=1 << 20)

    def produce() -> None:
        for _ in range(MIN_PART_SIZE // 65536 + 20):  # past the first part
            pipe.write(b"\x01" * 65536)
        pipe.abort("limit crossed")

    thread = threading.Thread(target=produce)
    thread.start()
    with pytest.raises(UploadAbortedError, match="limit crossed"):
        store.put_stream(uri, pipe)
    thread.join()
    assert not store.exists(uri)


def test_unreachable_s3_is_a_storage_error(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={"s3_endpoint": f"http://127.0.0.1:{free_port()}"})
    with (
        ObjectStore.from_settings(settings, connect_timeout_s=1, retries=0) as store,
        pytest.raises(StorageUnavailableError, match="unreachable"),
    ):
        store.stat(S3Uri("audio", "k"))
