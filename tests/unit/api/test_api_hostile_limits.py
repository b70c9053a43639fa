"""The failure limiter's peek, its memory bound, and how file names are shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer_api import ratelimit
from producer_api.ratelimit import RateLimiter
from producer_api.upload import MAX_SHOWN_FILENAME, shown_filename


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wait_s_peeks_without_taking_a_token() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.wait_s("10.0.0.1") == 0.0
    assert limiter.wait_s("10.0.0.1") == 0.0  # peeking twice costs nothing
    limiter.acquire("10.0.0.1")
    limiter.acquire("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == 1.0
    assert limiter.wait_s("10.0.0.2") == 0.0
    clock.now = 1.0
    assert limiter.wait_s("10.0.0.1") == 0.0


def test_full_buckets_are_forgotten_when_many_keys_pass_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "_MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    for n in range(9):
        limiter.acquire(f"passer-by-{n}")
    clock.now = 1.9
    limiter.acquire("busy")
    limiter.acquire("busy")
    clock.now = 2.5  # the passers-by have refilled (burst / rate = 2 s); "busy" has not
    limiter.acquire("newcomer")
    assert limiter.wait_s("busy") > 0  # still remembered as over its limit
    assert len(limiter._buckets) <= 2


@given(st.text())
def test_shown_filenames_are_valid_printable_utf8(name: str) -> None:
    shown = shown_filename(name)
    assert shown is not None
    shown.encode("utf-8")  # no surrogates
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    assert len(shown) <= MAX_SHOWN_FILENAME


def test_shown_filename_keeps_a_readable_name_and_its_extension() -> None:
    undecodable = b"caf\xe9.flac".decode("utf-8", "surrogateescape")
    assert shown_filename(undecodable) == "caf\ufffd.flac"
    assert shown_filename("a\x00b\r\n.wav") == "a\ufffdb\ufffd\ufffd.wav"
    assert shown_filename("Ünïcode talk.mp3") == "Ünïcode talk.mp3"
    long_name = shown_filename("x" * 1000 + ".opus")
    assert long_name is not None
    assert long_name.endswith(".opus")
    assert shown_filename(None) is None
