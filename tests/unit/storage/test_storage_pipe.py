from __future__ import annotations

import threading

import pytest

from storage.errors import UploadAbortedError
from storage.pipe import ChunkPipe


def _writer(pipe: ChunkPipe, chunks: list[bytes]) -> threading.Thread:
    def run() -> None:
        for chunk in chunks:
            pipe.write(chunk)
        pipe.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_reads_exact_sizes_across_chunks_and_never_buffers_past_the_bound() -> None:
    pipe = ChunkPipe(max_buffered=10)
    chunks = [bytes([i]) * 7 for i in range(20)]
    thread = _writer(pipe, chunks)
    out: list[bytes] = []
    while block := pipe.read(16):
        assert pipe.buffered <= 10
        out.append(block)
    thread.join()
    assert b"".join(out) == b"".join(chunks)
    assert all(len(block) == 16 for block in out[:-1])


def test_read_all() -> None:
    pipe = ChunkPipe(max_buffered=1 << 20)
    thread = _writer(pipe, [b"ab", b"cd"])
    assert pipe.read() == b"abcd"
    assert pipe.read(5) == b""
    thread.join()


def test_abort_wakes_the_reader() -> None:
    pipe = ChunkPipe()
    pipe.write(b"partial")
    pipe.abort("too large")
    with pytest.raises(UploadAbortedError, match="too large"):
        pipe.read(100)


def test_abort_wakes_a_blocked_writer() -> None:
    pipe = ChunkPipe(max_buffered=4)
    pipe.write(b"1234")
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            pipe.write(b"5678")
        except UploadAbortedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    pipe.abort("client went away")
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1


def test_write_after_close_is_refused() -> None:
    pipe = ChunkPipe()
    pipe.close()
    with pytest.raises(ValueError, match="closed"):
        pipe.write(b"x")


def test_try_write_refuses_instead_of_blocking() -> None:
    pipe = ChunkPipe(max_buffered=4)
    assert pipe.try_write(b"123")
    assert not pipe.try_write(b"45")
    assert pipe.read(3) == b"123"
    assert pipe.try_write(b"45678")  # an empty pipe takes one oversized chunk
