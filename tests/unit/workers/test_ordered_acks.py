"""A partition's acks reach faust in offset order, whatever order the jobs end in."""

from __future__ import annotations

import asyncio

from schemas.events import SourcePosition
from stream_workers.ordered_acks import Ack, OrderedAcks


class AckLog:
    """What faust would have been told, in order."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack_of(self, partition: int, offset: int, pause: bool = False) -> Ack:
        async def ack() -> None:
            if pause:
                await asyncio.sleep(0)  # another releaser may run here
            self.acked.append((partition, offset))

        return ack


def _read(acks: OrderedAcks, log: AckLog, partition: int, offset: int, pause: bool = False) -> Ack:
    position = SourcePosition("requests", partition, offset)
    return acks.admitted(position, log.ack_of(partition, offset, pause))


async def test_a_later_job_that_ends_first_waits_for_the_earlier_one() -> None:
    acks, log = OrderedAcks(), AckLog()
    first, second, third = (_read(acks, log, 0, offset) for offset in (10, 11, 12))
    await second()
    await third()
    assert log.acked == []  # offset 10 still runs: nothing past it may be committed
    await first()
    assert log.acked == [(0, 10), (0, 11), (0, 12)]


async def test_partitions_do_not_hold_each_other_up() -> None:
    acks, log = OrderedAcks(), AckLog()
    slow = _read(acks, log, 0, 5)
    quick = _read(acks, log, 1, 5)
    await quick()
    assert log.acked == [(1, 5)]
    await slow()
    assert log.acked == [(1, 5), (0, 5)]


async def test_releasers_running_at_once_keep_the_order() -> None:
    acks, log = OrderedAcks(), AckLog()
    done = [_read(acks, log, 0, offset, pause=True) for offset in range(6)]
    await asyncio.gather(done[1](), done[3](), done[5]())
    await asyncio.gather(done[4](), done[2](), done[0]())
    assert log.acked == [(0, offset) for offset in range(6)]


async def test_a_partition_read_again_forgets_the_acks_of_its_old_messages() -> None:
    acks, log = OrderedAcks(), AckLog()
    old_first = _read(acks, log, 0, 3)
    old_second = _read(acks, log, 0, 4)
    # the partition went away and came back: faust reads it again from offset 3
    new_first = _read(acks, log, 0, 3)
    await old_first()
    await old_second()
    assert log.acked == []  # the old messages' jobs ending acks nothing of the new read
    await new_first()
    assert log.acked == [(0, 3)]


async def test_a_message_never_done_holds_back_everything_after_it() -> None:
    acks, log = OrderedAcks(), AckLog()
    _read(acks, log, 0, 0)  # a retry not yet due, or a job of a worker that is stopping
    later = [_read(acks, log, 0, offset) for offset in (1, 2, 3)]
    for done in later:
        await done()
    assert log.acked == []
