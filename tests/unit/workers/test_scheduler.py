"""The priority-aware slot scheduler."""

from __future__ import annotations

import asyncio

import pytest

from schemas.events import Priority
from stream_workers.errors import WorkerStoppingError
from stream_workers.scheduler import SlotScheduler


async def test_jobs_start_immediately_while_slots_are_free() -> None:
    scheduler = SlotScheduler(2)
    a = await scheduler.acquire(Priority.NORMAL)
    b = await scheduler.acquire(Priority.NORMAL)
    assert scheduler.in_use == 2
    a.release()
    b.release()
    assert scheduler.in_use == 0


async def test_high_job_behind_a_normal_backlog_gets_the_next_free_slot() -> None:
    scheduler = SlotScheduler(1)
    running = await scheduler.acquire(Priority.NORMAL)
    started: list[str] = []

    async def job(name: str, priority: Priority) -> None:
        async with await scheduler.acquire(priority):
            started.append(name)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(job(f"normal-{i}", Priority.NORMAL)) for i in range(50)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("high", Priority.HIGH)))
    await asyncio.sleep(0)
    assert scheduler.waiting(Priority.NORMAL) == 50
    assert scheduler.waiting(Priority.HIGH) == 1
    running.release()
    await asyncio.gather(*tasks)
    assert started[0] == "high"
    assert started[1:] == [f"normal-{i}" for i in range(50)]


async def test_no_normal_job_starts_while_a_high_job_waits() -> None:
    scheduler = SlotScheduler(2)
    first = await scheduler.acquire(Priority.NORMAL)
    second = await scheduler.acquire(Priority.NORMAL)
    high = asyncio.create_task(scheduler.acquire(Priority.HIGH))
    normal = asyncio.create_task(scheduler.acquire(Priority.NORMAL))
    await asyncio.sleep(0)
    first.release()
    await asyncio.sleep(0)
    assert high.done()
    assert not normal.done()
    second.release()
    await asyncio.sleep(0)
    assert normal.done()
    (await high).release()
    (await normal).release()


async def test_close_refuses_new_jobs_and_wakes_waiters() -> None:
    scheduler = SlotScheduler(1)
    held = await scheduler.acquire(Priority.HIGH)
    waiter = asyncio.create_task(scheduler.acquire(Priority.NORMAL))
    await asyncio.sleep(0)
    scheduler.close()
    with pytest.raises(WorkerStoppingError):
        await waiter
    with pytest.raises(WorkerStoppingError):
        await scheduler.acquire(Priority.HIGH)
    idle = asyncio.create_task(scheduler.wait_idle())
    await asyncio.sleep(0)
    assert not idle.done()
    held.release()
    await asyncio.wait_for(idle, 1)


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    scheduler = SlotScheduler(1)
    held = await scheduler.acquire(Priority.NORMAL)
    waiter = asyncio.create_task(scheduler.acquire(Priority.NORMAL))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    held.release()
    assert scheduler.in_use == 0
    again = await asyncio.wait_for(scheduler.acquire(Priority.NORMAL), 1)
    again.release()


async def test_must_wait_says_whether_a_job_would_queue() -> None:
    scheduler = SlotScheduler(1)
    assert not scheduler.must_wait()
    slot = await scheduler.acquire(Priority.NORMAL)
    assert scheduler.must_wait()
    slot.release()
    assert not scheduler.must_wait()
    scheduler.close()
    assert not scheduler.must_wait()  # a stopping worker queues nothing: acquire refuses
