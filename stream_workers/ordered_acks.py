"""Acks each partition's requests in offset order, whatever order their jobs end in.

Jobs run side by side and in cross-job batches, so a later request often ends before
an earlier one of the same partition. faust commits from the offsets it was told are
acked, and faust-streaming 0.15 gets one case wrong: when the committed offset N is
still unacked and N+1 is acked, it commits N+2, past the running job at N (its check
`min(acked) - committed > 1` is one off; faust-streaming issue #606, open). A worker
killed then loses that job: its successor starts after it. Handing faust the acks in
order, so that what it has been told is always a run starting at the committed
offset, keeps every commit behind the oldest job still running, whatever faust's own
arithmetic.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from schemas.events import SourcePosition

Ack = Callable[[], Awaitable[object]]


@dataclass(eq=False, slots=True)
class _Pending:
    offset: int
    ack: Ack
    done: bool = False


@dataclass(slots=True)
class _Partition:
    pending: deque[_Pending] = field(default_factory=deque)
    last_offset: int = -1
    void: bool = False
    """Read again from an earlier offset: its messages' acks must never reach faust,
    which would take them for the new reading's (same offsets, jobs still to run)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class OrderedAcks:
    """Holds each message's ack until every earlier message of its partition is done."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def admitted(self, position: SourcePosition, ack: Ack) -> Ack:
        """Note a message as read, in the order read; the returned callable marks it
        done and passes on, in offset order, every ack no earlier message holds up."""
        tp = (position.topic, position.partition)
        partition = self._partitions.setdefault(tp, _Partition())
        if position.offset <= partition.last_offset:
            # read again from an earlier offset (the partition came back after a
            # rebalance): faust redelivers all of it, so the old messages' acks are void
            partition.void = True
            partition = self._partitions[tp] = _Partition()
        partition.last_offset = position.offset
        entry = _Pending(position.offset, ack)
        partition.pending.append(entry)

        async def done() -> None:
            entry.done = True
            await self._release(partition)

        return done

    async def _release(self, partition: _Partition) -> None:
        # one releaser at a time, so faust never sees a later ack before an earlier one
        async with partition.lock:
            while not partition.void and partition.pending and partition.pending[0].done:
                await partition.pending.popleft().ack()
