"""Property test: any valid event survives encode/decode, in binary and in JSON."""

from __future__ import annotations

import contextlib
import functools
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas._convert import FromDict, ToDict, build_from_dict, build_to_dict
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import (
    EVENT_TYPES,
    AudioRef,
    CancelRequested,
    DeadLetter,
    Event,
    JobError,
    JobStatus,
    JobStatusChanged,
    JobTiming,
    PoolStats,
    Priority,
    ResultSummary,
    Source,
    SourcePosition,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    WorkerHeartbeat,
)
from schemas.history import load_history


@functools.cache
def codec() -> EventCodec:
    return EventCodec()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

text = st.text(max_size=40)
opt_text = st.none() | text
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
real = st.floats(allow_nan=False)
moment = st.integers(min_value=0, max_value=2**42).map(
    lambda ms: EPOCH + timedelta(milliseconds=ms)
)
requests = st.builds(
    TranscriptionRequested,
    event_id=text,
    job_id=text,
    occurred_at=moment,
    priority=st.sampled_from(Priority),
    attempt=st.integers(min_value=1, max_value=2**31 - 1),
    not_before=st.none() | moment,
    audio=st.builds(AudioRef, text, int64, text, text, text),
    model=text,
    engine=opt_text,
    language=opt_text,
    task=st.sampled_from(Task),
    options=st.builds(
        TranscriptionOptions, opt_text, st.booleans(), real, st.none() | int32, st.booleans()
    ),
    owner=opt_text,
    idempotency_key=opt_text,
    callback_url=opt_text,
    source=st.sampled_from(Source),
    correlation_id=opt_text,
)
events: st.SearchStrategy[Event] = st.one_of(
    requests,
    st.builds(
        JobStatusChanged,
        event_id=text,
        job_id=text,
        occurred_at=moment,
        attempt=st.integers(min_value=1, max_value=2**31 - 1),
        seq=int64,
        status=st.sampled_from(JobStatus),
        progress=st.floats(min_value=0.0, max_value=1.0),
        worker_id=opt_text,
        engine=opt_text,
        model=opt_text,
        error=st.none() | st.builds(JobError, text, text, st.booleans()),
        result=st.none()
        | st.builds(ResultSummary, text, text, real, int64, st.none() | real, int64, text),
        timing=st.none() | st.builds(JobTiming, int64, int64, real),
    ),
    st.builds(CancelRequested, text, text, moment, opt_text, opt_text),
    st.builds(
        DeadLetter,
        event_id=text,
        job_id=opt_text,
        occurred_at=moment,
        error_type=text,
        error_message=text,
        stack_trace=opt_text,
        retry_count=int32,
        source=st.builds(SourcePosition, text, int32, int64),
        original_value=st.binary(max_size=64),
        request=st.none() | requests,
    ),
    st.builds(
        WorkerHeartbeat,
        worker_id=text,
        host=text,
        pid=int32,
        occurred_at=moment,
        engines=st.lists(text, max_size=3),
        loaded_models=st.lists(text, max_size=3),
        pool=st.builds(PoolStats, int64, int64, int64, int64, int64, real),
        in_flight=int32,
        concurrency=int32,
        processed=int64,
        failed=int64,
    ),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_round_trip(event: Event) -> None:
    assert codec().decode(codec().encode(event), type(event)) == event
    assert codec().decode_any(codec().encode_json(event)) == event


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(noise: bytes) -> None:
    header = codec().current_schema(TranscriptionRequested).fingerprint
    for value in (noise, b"\xc3\x01" + header + noise):
        with contextlib.suppress(UndecodableEvent):
            codec().decode_any(value)


@functools.cache
def fastavro_parts() -> dict[type[Event], tuple[Any, ToDict, FromDict]]:
    """fastavro's parsed current schema and dict converters per event, the reference path."""
    history = load_history()
    return {
        cls: (history[cls.__name__][-1].parsed, build_to_dict(cls), build_from_dict(cls))
        for cls in EVENT_TYPES
    }


@settings(max_examples=300, deadline=None)
@given(events)
def test_generated_code_writes_and_reads_what_fastavro_does(event: Event) -> None:
    parsed, to_dict, from_dict = fastavro_parts()[type(event)]
    reference = io.BytesIO()
    fastavro.schemaless_writer(reference, parsed, to_dict(event))
    assert codec().encode(event)[10:] == reference.getvalue()
    header = b"\xc3\x01" + codec().current_schema(type(event)).fingerprint
    assert codec().decode(header + reference.getvalue(), type(event)) == event
    reference.seek(0)
    record = fastavro.schemaless_reader(reference, parsed, None)
    assert isinstance(record, dict)
    assert from_dict(record) == event
