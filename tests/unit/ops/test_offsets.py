"""End offsets that could not be read are unknown (None), never 0."""

from __future__ import annotations

import pytest

from ops.kafka.offsets import high_watermarks
from ops.kafka.tail import UnknownEndOffsetError, start_offsets
from whisperstream.cli.topics_cmds import end_offsets_text
from whisperstream.stack.ports import free_port


def test_partitions_not_read_before_the_timeout_are_unknown() -> None:
    nothing_listens = f"127.0.0.1:{free_port()}"
    ends = high_watermarks(nothing_listens, [("status", 0), ("status", 1)], timeout=1.0)
    assert ends == {("status", 0): None, ("status", 1): None}


def test_topics_list_shows_unknown_end_offsets_as_unknown() -> None:
    ends = {("status", 0): 7, ("status", 1): None, ("status", 2): 0}
    assert end_offsets_text(ends, "status", [0, 1, 2]) == "7 unknown 0"


def test_tail_from_now_refuses_to_start_at_an_unknown_end() -> None:
    assert start_offsets({("dlq", 0): 4, ("dlq", 1): 0}, "dlq", [0, 1]) == {0: 4, 1: 0}
    with pytest.raises(UnknownEndOffsetError, match=r"dlq\[1\]"):
        start_offsets({("dlq", 0): 4, ("dlq", 1): None}, "dlq", [0, 1])
