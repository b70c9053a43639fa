"""Priority-aware job slots shared by every agent of one worker.

`WORKER_CONCURRENCY` slots. A slot that frees goes to the oldest waiting high job, and
to a normal job only while no high job waits, so a high job behind any backlog of
normal jobs starts as soon as a running job ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from schemas.events import Priority
from stream_workers.errors import WorkerStoppingError


class Slot:
    def __init__(self, scheduler: SlotScheduler) -> None:
        self._scheduler = scheduler
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._scheduler._release()

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()


class SlotScheduler:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a scheduler needs at least one slot")
        self._slots = slots
        self._free = slots
        self._waiting: dict[Priority, deque[asyncio.Future[None]]] = {
            Priority.HIGH: deque(),
            Priority.NORMAL: deque(),
        }
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def in_use(self) -> int:
        return self._slots - self._free

    def waiting(self, priority: Priority) -> int:
        return sum(not f.done() for f in self._waiting[priority])

    def must_wait(self) -> bool:
        """Whether a job asking now would have to wait for a slot (whatever its priority)."""
        return not self._closed and not (self._free > 0 and not self._any_waiting())

    async def acquire(self, priority: Priority) -> Slot:
        """Wait for a slot; raises WorkerStoppingError once the scheduler is closed."""
        if self._closed:
            raise WorkerStoppingError("the worker is stopping and takes no new jobs")
        if self._free > 0 and not self._any_waiting():
            self._take()
            return Slot(self)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release()  # granted just as we were cancelled: hand it on
            raise
        return Slot(self)

    def close(self) -> None:
        """Take no new jobs: every waiter and every later acquire gets WorkerStoppingError."""
        self._closed = True
        for queue in self._waiting.values():
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_exception(WorkerStoppingError("the worker is stopping"))

    async def wait_idle(self) -> None:
        """Return once no slot is in use (wrap it in `asyncio.timeout` for a grace period)."""
        await self._idle.wait()

    def _any_waiting(self) -> bool:
        return any(not f.done() for queue in self._waiting.values() for f in queue)

    def _take(self) -> None:
        self._free -= 1
        self._idle.clear()

    def _release(self) -> None:
        self._free += 1
        self._dispatch()
        if self._free == self._slots:
            self._idle.set()

    def _dispatch(self) -> None:
        for priority in (Priority.HIGH, Priority.NORMAL):
            queue = self._waiting[priority]
            while queue and self._free > 0:
                future = queue.popleft()
                if future.done():
                    continue
                self._take()
                future.set_result(None)
