"""The model pool with a fake loader (tests/support/model_fakes.py): limits, LRU eviction,
memory budget, OOM fallback."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from stream_workers.engines.base import ModelKey, TranscribeRequest, TranscriptResult
from stream_workers.errors import ModelOutOfMemoryError, ModelUnusableError, PoolTimeoutError
from stream_workers.pool import ModelPool
from tests.support.model_fakes import BASE, FAMILY, SMALL, TINY, FakeLoader, FakeModel


def test_second_acquire_of_an_idle_model_is_a_hit_without_loading() -> None:
    loader = FakeLoader()
    pool = ModelPool(loader, max_size=2)
    with pool.acquire(TINY, timeout=1) as lease:
        first = lease.model
    with pool.acquire(TINY, timeout=1) as lease:
        assert lease.model is first
    stats = pool.stats()
    assert (stats.hits, stats.misses, stats.loads) == (1, 1, 1)
    assert len(loader.loaded) == 1


def test_concurrent_users_of_one_key_get_separate_instances() -> None:
    pool = ModelPool(FakeLoader(), max_size=2)
    with pool.acquire(TINY, timeout=1) as a, pool.acquire(TINY, timeout=1) as b:
        assert a.model is not b.model
        assert pool.in_use() == 2


def test_never_more_than_max_size_models_and_lru_idle_one_is_evicted() -> None:
    now = [0.0]
    loader = FakeLoader()
    pool = ModelPool(loader, max_size=2, clock=lambda: now[0])
    with pool.acquire(TINY, timeout=1):
        now[0] = 1
    with pool.acquire(BASE, timeout=1):
        now[0] = 2
    with pool.acquire(TINY, timeout=1):  # tiny is now the most recently used
        now[0] = 3
    with pool.acquire(SMALL, timeout=1):
        assert pool.loaded() == sorted([str(TINY), str(SMALL)])
    assert pool.stats().evictions == 1
    evicted = [m for m in loader.loaded if m.closed]
    assert [m.key for m in evicted] == [BASE]


def test_a_model_in_use_is_never_evicted_and_acquire_times_out_clearly() -> None:
    pool = ModelPool(FakeLoader(), max_size=1)
    with pool.acquire(TINY, timeout=1) as held:
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError, match="MODEL_POOL_MAX_SIZE"):
            pool.acquire(BASE, timeout=0.3)
        assert time.monotonic() - started >= 0.3
        assert not held.model.closed  # type: ignore[attr-defined]
    assert pool.loaded() == [str(TINY)]


def test_a_waiter_gets_the_slot_when_the_holder_releases() -> None:
    pool = ModelPool(FakeLoader(), max_size=1)
    lease = pool.acquire(TINY, timeout=1)
    got: list[ModelKey] = []

    def wait_for_base() -> None:
        with pool.acquire(BASE, timeout=5) as other:
            got.append(other.key)

    thread = threading.Thread(target=wait_for_base)
    thread.start()
    # The waiter has had its chance once it is blocked in the pool (or, were the slot
    # wrongly handed out, once it is done): only then is "nothing yet" meaningful.
    deadline = time.monotonic() + 5
    while pool.waiting() == 0 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert got == []
    assert pool.waiting() == 1
    lease.__exit__(None, None, None)
    thread.join(5)
    assert got == [BASE]
    assert pool.waiting() == 0


def test_memory_budget_evicts_before_a_load_that_would_exceed_it() -> None:
    loader = FakeLoader({TINY: 100, BASE: 200, SMALL: 250})
    pool = ModelPool(loader, max_size=5, max_memory_mb=350)
    with pool.acquire(TINY, timeout=1):
        pass
    with pool.acquire(BASE, timeout=1):
        pass
    assert pool.stats().evictions == 0
    with pool.acquire(SMALL, timeout=1):  # 100 + 200 + 250 > 350: both idle ones go
        assert pool.loaded() == [str(SMALL)]
    assert pool.stats().evictions == 2


def test_model_over_the_whole_budget_falls_back_to_a_smaller_one() -> None:
    loader = FakeLoader({TINY: 100, BASE: 200, SMALL: 900})
    pool = ModelPool(loader, max_size=2, max_memory_mb=300)
    _, used = pool.run(SMALL, 1, lambda model: model.key)
    assert used == BASE


def test_oom_while_loading_falls_back_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    loader = FakeLoader()
    loader.oom_on_load = {SMALL, BASE}
    pool = ModelPool(loader, max_size=2)
    with caplog.at_level(logging.INFO, logger="stream_workers.pool"):
        result, used = pool.run(SMALL, 1, lambda model: model.key)
    assert used == TINY
    assert result == TINY
    assert pool.stats().oom_fallbacks == 2
    assert pool.fallbacks() == [(SMALL, BASE), (BASE, TINY)]
    assert "OOM loading faster-whisper/small/int8" in caplog.text
    assert "Model acquired in" in caplog.text


def test_oom_while_running_discards_the_model_and_falls_back() -> None:
    loader = FakeLoader()
    loader.oom_on_run = {BASE}
    pool = ModelPool(loader, max_size=2)
    fake_request = TranscribeRequest()

    def work(model: object) -> TranscriptResult:
        assert isinstance(model, FakeModel)
        return model.transcribe(np.zeros(16, dtype=np.float32), fake_request, lambda _d, _t: None)

    _, used = pool.run(BASE, 1, work)
    assert used == TINY
    assert str(BASE) not in pool.loaded()
    assert pool.stats().oom_fallbacks == 1


def test_oom_with_the_smallest_model_is_a_transient_error() -> None:
    loader = FakeLoader()
    loader.oom_on_load = {TINY}
    pool = ModelPool(loader, max_size=1)
    with pytest.raises(ModelOutOfMemoryError, match="no smaller model") as caught:
        pool.run(TINY, 1, lambda model: model)
    assert caught.value.retryable
    assert pool.loaded() == []  # the failed load released its reservation
    with pool.acquire(BASE, timeout=0.1) as lease:  # the only slot is usable again
        assert lease.key == BASE


def test_warm_loads_without_counting_misses_and_then_everything_hits() -> None:
    loader = FakeLoader()
    pool = ModelPool(loader, max_size=2)
    pool.warm(TINY, 2, timeout=1)
    assert len(loader.loaded) == 2
    for _ in range(10):
        with pool.acquire(TINY, timeout=1):
            pass
    stats = pool.stats()
    assert (stats.hits, stats.misses, stats.loads) == (10, 0, 2)


def test_pool_is_safe_under_many_threads() -> None:
    loader = FakeLoader()
    pool = ModelPool(loader, max_size=2)
    peak = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def job(key: ModelKey) -> None:
        try:
            for _ in range(20):
                with pool.acquire(key, timeout=10):
                    with lock:
                        peak[0] = max(peak[0], len(pool.loaded()))
                    time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(FAMILY[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert peak[0] <= 2
    assert pool.in_use() == 0


def test_a_model_that_became_unusable_is_dropped_and_the_error_raised() -> None:
    loader = FakeLoader()
    pool = ModelPool(loader, max_size=2)

    def work(_model: object) -> TranscriptResult:
        raise ModelUnusableError("its engine process died")

    with pytest.raises(ModelUnusableError):
        pool.run(TINY, 1, work)
    assert loader.loaded[0].closed
    assert pool.loaded() == []
    # the next job gets a freshly loaded model
    pool.run(TINY, 1, lambda model: model)
    assert len(loader.loaded) == 2
