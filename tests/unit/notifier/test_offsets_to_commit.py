"""The notifier commits no partition past an event it has not durably scheduled."""

from __future__ import annotations

from notifier.consumer import offsets_to_commit


def test_with_nothing_waiting_each_partition_commits_past_its_last_record() -> None:
    assert offsets_to_commit({0: 10, 3: 7}, []) == {0: 10, 3: 7}


def test_a_waiting_event_holds_its_partition_at_its_own_offset() -> None:
    assert offsets_to_commit({0: 10, 3: 7}, [(0, 4)]) == {0: 4, 3: 7}


def test_the_oldest_of_several_waiting_events_decides() -> None:
    assert offsets_to_commit({0: 10}, [(0, 8), (0, 5), (0, 9)]) == {0: 5}


def test_a_waiting_event_of_a_partition_no_longer_read_commits_nothing_there() -> None:
    # after a revoke the partition's position is gone; nothing may be committed for it
    assert offsets_to_commit({0: 10}, [(2, 3)]) == {0: 10}
