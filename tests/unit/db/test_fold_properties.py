"""Property: the fold's final row depends only on each topic's own order.

Every interleaving is checked, not a sample: walking the lattice of per-topic prefixes
``(i_1, ..., i_k)`` and asserting that each prefix is reached in the same state from
every predecessor proves, by induction, that all interleavings of the streams end in
the same row (and costs only the product of the stream lengths).

Duplicates are modelled as Kafka makes them: a copy of an event placed anywhere after
the original in the same topic (a redelivery or a producer retry).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from db import fold
from db.fold import JobEvent
from db.rows import JobRow
from schemas.events import (
    JobStatus,
    JobStatusChanged,
    Priority,
    SourcePosition,
    TranscriptionRequested,
)
from tests.support.fold_events import at, cancel, dead_letter, job_error, request, status

Stream = list[JobEvent]

JOB = uuid.UUID("0b7a3f7e-1d1c-4a55-9a0e-4c1d5e2f3a40")


@dataclass(frozen=True)
class History:
    """One job's events, split by topic, each list in its topic's order."""

    requests: Stream
    retries: Stream
    statuses: Stream
    controls: Stream
    dead_letters: Stream

    def streams(self) -> list[Stream]:
        return [self.requests, self.retries, self.statuses, self.controls, self.dead_letters]


_TERMINALS = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]


@st.composite
def histories(draw: st.DrawFn) -> History:
    attempts = draw(st.integers(1, 3))
    request_at = draw(st.integers(0, 30))
    priority = draw(st.sampled_from(list(Priority)))
    requests: Stream = [request(JOB, occurred_at=at(request_at), priority=priority)]
    retries: Stream = [
        request(JOB, occurred_at=at(request_at + 10 * a), attempt=a, priority=Priority.NORMAL)
        for a in range(2, attempts + 1)
    ]

    clock = draw(st.integers(0, 40))
    statuses: Stream = []

    def emit(attempt: int, seq: int, state: JobStatus, progress: float = 0.0) -> None:
        nonlocal clock
        clock += draw(st.integers(0, 3))
        error = (
            job_error(f"attempt {attempt} failed")
            if state.value in {"retrying", "failed"}
            else None
        )
        statuses.append(
            status(
                JOB,
                occurred_at=at(clock),
                attempt=attempt,
                seq=seq,
                status=state,
                progress=progress,
                worker_id=f"worker-{attempt}",
                error=error,
            )
        )

    if draw(st.booleans()):
        emit(1, 0, JobStatus.PENDING)
    for attempt in range(1, attempts + 1):
        seq = 1
        last = attempt == attempts
        if not last or draw(st.booleans()):
            emit(attempt, seq, JobStatus.PROCESSING)
            for step in range(draw(st.integers(0, 2))):
                seq += 1
                emit(attempt, seq, JobStatus.PROCESSING, progress=(step + 1) / 4)
        seq += 1
        if not last:
            emit(attempt, seq, JobStatus.RETRYING)
            continue
        ending = draw(st.sampled_from([None, *_TERMINALS]))
        if ending is not None:
            emit(attempt, seq, ending)
            if draw(st.booleans()):  # a zombie worker's event after the end
                emit(attempt + 1, 0, JobStatus.PROCESSING)

    controls: Stream = [
        cancel(JOB, occurred_at=at(t)) for t in draw(st.lists(st.integers(0, 60), max_size=2))
    ]
    dead_letters: Stream = [
        dead_letter(
            JOB,
            occurred_at=at(t),
            source=SourcePosition("transcription.requests.normal", 0, offset),
            error_type=f"Error{offset}",
        )
        for offset, t in enumerate(draw(st.lists(st.integers(0, 60), max_size=2)))
    ]
    return History(requests, retries, statuses, controls, dead_letters)


def with_duplicates(data: st.DataObject, stream: Stream) -> Stream:
    """``stream`` with copies of some events inserted after their originals."""
    out = list(stream)
    if not out:
        return out
    for _ in range(data.draw(st.integers(0, 3))):
        original = data.draw(st.integers(0, len(out) - 1))
        position = data.draw(st.integers(original + 1, len(out)))
        out.insert(position, out[original])
    return out


def fold_in_order(events: Sequence[JobEvent]) -> JobRow | None:
    row: JobRow | None = None
    for event in events:
        row = fold.apply(row, event)
    return row


def fold_every_interleaving(streams: Sequence[Stream]) -> JobRow | None:
    """The row every interleaving of ``streams`` ends in; fails if any two differ."""
    lengths = [len(s) for s in streams]
    states: dict[tuple[int, ...], JobRow | None] = {}
    for prefix in sorted(itertools.product(*(range(n + 1) for n in lengths)), key=sum):
        if sum(prefix) == 0:
            states[prefix] = None
            continue
        reached = []
        for topic, taken in enumerate(prefix):
            if taken == 0:
                continue
            before = (*prefix[:topic], taken - 1, *prefix[topic + 1 :])
            reached.append(fold.apply(states[before], streams[topic][taken - 1]))
        first = reached[0]
        assert all(state == first for state in reached), f"order-dependent at {prefix}"
        states[prefix] = first
    return states[tuple(lengths)]


def expected_status(statuses: Stream) -> str:
    """The model: the first terminal status in the status topic, else the last one."""
    seen = [e.status for e in statuses if isinstance(e, JobStatusChanged)]
    for state in seen:
        if state.is_terminal:
            return state.value
    return seen[-1].value if seen else "pending"


@settings(max_examples=300, deadline=None)
@given(histories())
def test_every_interleaving_of_the_topics_gives_the_same_row(history: History) -> None:
    row = fold_every_interleaving(history.streams())

    assert row is not None
    assert row == fold_in_order(list(itertools.chain(*history.streams())))
    assert row.status == expected_status(history.statuses)
    assert row.has_request
    assert row.created_at == history.requests[0].occurred_at
    assert (row.result is not None) == (row.status == "completed")
    cancels = [e.occurred_at for e in history.controls]
    assert row.cancel_requested_at == (min(cancels) if cancels else None)
    all_attempts = [
        e.attempt
        for e in itertools.chain(history.retries, history.statuses)
        if isinstance(e, TranscriptionRequested | JobStatusChanged)
    ]
    assert row.attempts == max([1, *all_attempts])


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_duplicates_in_any_interleaving_change_nothing(
    history: History, data: st.DataObject
) -> None:
    reference = fold_in_order(list(itertools.chain(*history.streams())))
    duplicated = [with_duplicates(data, stream) for stream in history.streams()]

    assert fold_every_interleaving(duplicated) == reference


@settings(max_examples=200, deadline=None)
@given(histories())
def test_status_arriving_before_the_request_gives_the_same_row(history: History) -> None:
    late_request = [history.statuses, history.controls, history.dead_letters, history.retries]
    late_request.append(history.requests)
    assert fold_in_order(list(itertools.chain(*late_request))) == fold_in_order(
        list(itertools.chain(*history.streams()))
    )
