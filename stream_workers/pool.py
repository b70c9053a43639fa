"""The bounded, thread-safe model pool keyed by (engine, model, compute type).

A loaded model is lent to one job at a time (openai-whisper installs per-call hooks on
its modules, so sharing one instance between threads is unsafe); several instances of
one key may be loaded when jobs run concurrently. At most `max_size` instances exist,
loading ones included; idle ones are evicted least recently used first, and only idle
ones. An optional memory budget evicts before a load that would exceed it. Out of
memory while loading or running falls back to the next smaller model of the family.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, TypeVar

from schemas.events import PoolStats
from stream_workers.engines.base import ModelKey, Transcriber
from stream_workers.errors import (
    ModelOutOfMemoryError,
    ModelUnusableError,
    PoolTimeoutError,
    is_out_of_memory,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelLoader(Protocol):
    def load(self, key: ModelKey) -> Transcriber: ...

    def estimate_mb(self, key: ModelKey) -> float: ...

    def smaller(self, key: ModelKey) -> ModelKey | None: ...


@dataclass(eq=False)
class _Entry:
    key: ModelKey
    model: Transcriber
    memory_mb: float
    last_used: float
    in_use: bool = True


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    oom_fallbacks: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    fallbacks: list[tuple[ModelKey, ModelKey]] = field(default_factory=list)


class Lease:
    """A model lent to one caller; release it by leaving the `with` block."""

    def __init__(self, pool: ModelPool, entry: _Entry) -> None:
        self._pool = pool
        self._entry = entry
        self._discard = False

    @property
    def model(self) -> Transcriber:
        return self._entry.model

    @property
    def key(self) -> ModelKey:
        return self._entry.key

    def discard(self) -> None:
        """Unload the model on release instead of returning it (after an OOM while running)."""
        self._discard = True

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._pool._release(self._entry, discard=self._discard)


class ModelPool:
    def __init__(
        self,
        loader: ModelLoader,
        *,
        max_size: int,
        max_memory_mb: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._loader = loader
        self._max_size = max_size
        self._max_memory_mb = max_memory_mb
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: list[_Entry] = []
        self._loading: list[float] = []  # memory reserved by loads in progress
        self._counters = _Counters()
        self._waiting = 0
        self._closed = False

    # -- public --------------------------------------------------------------------

    def acquire(self, key: ModelKey, timeout: float, *, warming: bool = False) -> Lease:
        """Lend an idle instance of `key`, loading one when there is room; wait up to `timeout`.

        Raises PoolTimeoutError when nothing frees up in time and ModelOutOfMemoryError when
        the load itself runs out of memory (or could never fit the budget).
        """
        started = self._clock()
        deadline = started + timeout
        need = self._loader.estimate_mb(key)
        with self._cond:
            while True:
                self._check_open()
                entry = self._idle(key)
                if entry is not None:
                    entry.in_use = True
                    if not warming:
                        self._counters.hits += 1
                    log.info("Model acquired in %.3fs: %s (pool hit)", self._clock() - started, key)
                    return Lease(self, entry)
                budget = self._max_memory_mb
                if budget is not None and need > budget:
                    raise ModelOutOfMemoryError(
                        f"{key} needs about {need:.0f} MB, over MODEL_POOL_MAX_MEMORY_MB={budget}"
                    )
                if self._make_room(need):
                    self._loading.append(need)
                    if not warming:
                        self._counters.misses += 1
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise PoolTimeoutError(
                        f"no model slot for {key} within {timeout:.1f}s: all "
                        f"{self._max_size} pool slots are in use (MODEL_POOL_MAX_SIZE)"
                    )
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
        entry = self._load(key, need)
        log.info("Model acquired in %.3fs: %s (loaded)", self._clock() - started, key)
        return Lease(self, entry)

    def run(
        self, key: ModelKey, timeout: float, work: Callable[[Transcriber], T]
    ) -> tuple[T, ModelKey]:
        """Run `work` with a model of `key`, falling back to smaller models on OOM.

        Returns the work's result and the key of the model that produced it.
        """
        current = key
        while True:
            try:
                lease = self.acquire(current, timeout)
            except ModelOutOfMemoryError as exc:
                current = self._fall_back(current, exc, "loading")
                continue
            with lease:
                try:
                    return work(lease.model), current
                except ModelUnusableError:
                    lease.discard()
                    raise
                except BaseException as exc:
                    if not is_out_of_memory(exc):
                        raise
                    lease.discard()
                    failed = exc
            current = self._fall_back(current, failed, "running")

    def warm(self, key: ModelKey, count: int, timeout: float) -> None:
        """Load `count` instances of `key` up front (not counted as misses)."""
        leases = [self.acquire(key, timeout, warming=True) for _ in range(count)]
        for lease in leases:
            lease.__exit__(None, None, None)

    def stats(self) -> PoolStats:
        with self._cond:
            c = self._counters
            return PoolStats(
                c.hits, c.misses, c.evictions, c.oom_fallbacks, c.loads, c.load_seconds
            )

    def fallbacks(self) -> list[tuple[ModelKey, ModelKey]]:
        with self._cond:
            return list(self._counters.fallbacks)

    def loaded(self) -> list[str]:
        with self._cond:
            return sorted(str(entry.key) for entry in self._entries)

    def in_use(self) -> int:
        with self._cond:
            return sum(entry.in_use for entry in self._entries)

    def waiting(self) -> int:
        """Callers blocked in :meth:`acquire` until a slot frees up."""
        with self._cond:
            return self._waiting

    def close(self) -> None:
        """Unload idle models now; models in use are unloaded when their lease ends."""
        with self._cond:
            self._closed = True
            idle = [entry for entry in self._entries if not entry.in_use]
            self._entries = [entry for entry in self._entries if entry.in_use]
            self._cond.notify_all()
        for entry in idle:
            entry.model.close()

    # -- internals -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PoolTimeoutError("the model pool is closed")

    def _idle(self, key: ModelKey) -> _Entry | None:
        for entry in self._entries:
            if entry.key == key and not entry.in_use:
                return entry
        return None

    def _used_mb(self) -> float:
        return sum(e.memory_mb for e in self._entries) + sum(self._loading)

    def _fits(self, need: float) -> bool:
        if len(self._entries) + len(self._loading) >= self._max_size:
            return False
        budget = self._max_memory_mb
        return budget is None or self._used_mb() + need <= budget

    def _make_room(self, need: float) -> bool:
        """Evict idle models, least recently used first, until a load of `need` fits."""
        while not self._fits(need):
            idle = [entry for entry in self._entries if not entry.in_use]
            if not idle:
                return False
            victim = min(idle, key=lambda entry: entry.last_used)
            self._entries.remove(victim)
            self._counters.evictions += 1
            log.info("Model evicted (least recently used): %s", victim.key)
            victim.model.close()
        return True

    def _load(self, key: ModelKey, need: float) -> _Entry:
        started = time.perf_counter()
        try:
            model = self._loader.load(key)
        except BaseException as exc:
            with self._cond:
                self._loading.remove(need)
                self._cond.notify_all()
            if is_out_of_memory(exc):
                log.warning("OOM loading %s: %s", key, exc)
                raise ModelOutOfMemoryError(f"out of memory loading {key}: {exc}") from exc
            raise
        seconds = time.perf_counter() - started
        entry = _Entry(key, model, need, self._clock())
        with self._cond:
            self._loading.remove(need)
            self._counters.loads += 1
            self._counters.load_seconds += seconds
            self._entries.append(entry)
        log.info("Model loaded in %.2fs: %s", seconds, key)
        return entry

    def _release(self, entry: _Entry, *, discard: bool) -> None:
        drop = discard or self._closed
        with self._cond:
            entry.in_use = False
            entry.last_used = self._clock()
            if drop and entry in self._entries:
                self._entries.remove(entry)
            self._cond.notify_all()
        if drop:
            entry.model.close()

    def _fall_back(self, key: ModelKey, exc: BaseException, during: str) -> ModelKey:
        smaller = self._loader.smaller(key)
        if smaller is None:
            raise ModelOutOfMemoryError(
                f"out of memory {during} {key} and no smaller model of its family is installed"
            ) from exc
        with self._cond:
            self._counters.oom_fallbacks += 1
            self._counters.fallbacks.append((key, smaller))
        log.warning("OOM %s %s; falling back to %s", during, key, smaller)
        return smaller
