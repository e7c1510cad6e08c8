"""Which offset a worker commits (offsets.next_commit): never over a record that was
fetched and not processed, however the acknowledged offsets around it look.

Faust's own rule commits over such records in two cases, shown first: they cost the
fault suite's kill-9 scenario signals (README "Reliability")."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from remediator.kafka.offsets import next_commit, skipped_ranges


def commit(acked: list[int], start: int | None, gaps: tuple[range, ...] = ()) -> int | None:
    return next_commit(acked, set(acked), gaps, start)


def faust_commit(acked: list[int], committed: int | None) -> int | None:
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {"tp": list(acked)}),
        _acked_index=defaultdict(set, {"tp": set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {"tp": committed}),
    )
    return Consumer._new_offset(consumer, "tp")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("acked", "committed", "faust_says"),
    [
        ([5, 6], None, 7),  # never committed: 0-4 skipped
        ([3], 0, 4),  # committed at 0 reads as "never": 0-2 skipped
        ([101, 102], 100, 103),  # 100 skipped because 101 was acknowledged
    ],
)
def test_faust_commits_over_unprocessed_records_and_we_do_not(
    acked: list[int], committed: int | None, faust_says: int
) -> None:
    assert faust_commit(acked, committed) == faust_says
    start = committed if committed is not None else 0
    assert commit(acked, start) is None


def test_the_run_from_the_committed_offset_is_committed_and_forgotten() -> None:
    acked = [100, 101, 102, 105, 106]
    index = set(acked)
    assert next_commit(acked, index, (), 100) == 103
    assert acked == [105, 106]
    assert index == {105, 106}
    # 103 and 104 still missing: nothing more until they are acknowledged.
    assert next_commit(acked, index, (), 103) is None
    acked += [104, 103]
    index |= {103, 104}
    assert next_commit(acked, index, (), 103) == 107
    assert acked == []
    assert index == set()


def test_a_partition_never_committed_starts_at_its_first_offset() -> None:
    assert commit([0, 1, 2], 0) == 3
    assert commit([40, 41], 40) == 42  # retention removed 0-39
    assert commit([41], 40) is None


def test_nothing_is_committed_while_the_start_is_unknown() -> None:
    assert commit([0, 1], None) is None


def test_offsets_with_no_record_count_as_done() -> None:
    # A gap the consumer saw (e.g. a transaction marker at 12) does not block the run.
    assert commit([10, 11, 13], 10, (range(12, 13),)) == 14
    # A gap beyond an unprocessed record does not move the commit over it.
    assert commit([10, 13], 10, (range(12, 13),)) == 11


def test_stale_acknowledgements_below_the_start_are_dropped() -> None:
    acked = [3, 4, 10]
    assert next_commit(acked, set(acked), (), 10) == 11
    assert acked == []


def test_markers_after_the_last_record_are_committed_over_with_nothing_acknowledged() -> None:
    # A transaction's records 10-12 were committed earlier; its commit marker at 13 and an
    # aborted transaction at 14-15 came after: the fetcher moved past them.
    assert commit([], 13, (range(13, 16),)) == 16
    assert commit([], 13) is None


@pytest.mark.parametrize(
    ("before", "after", "delivered", "skipped"),
    [
        (10, 13, [10, 11, 12], []),  # records only
        (10, 14, [10, 11, 12], [(13, 13)]),  # a marker after the last record
        (10, 14, [], [(10, 13)]),  # a fetch with markers only
        (10, 17, [11, 12, 15], [(10, 10), (13, 14), (16, 16)]),  # holes everywhere
        (10, 10, [], []),  # no movement
        (50, 20, [20, 21], []),  # a seek back during the fetch: nothing counted
        (10, 12, [8, 9, 10, 11], []),  # records below the start (seek): ignored
    ],
)
def test_what_the_fetcher_moved_past_without_a_record_is_skipped(
    before: int, after: int, delivered: list[int], skipped: list[tuple[int, int]]
) -> None:
    assert skipped_ranges(before, after, delivered) == skipped
