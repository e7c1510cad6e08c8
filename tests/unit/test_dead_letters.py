"""An unusable input is dead-lettered once, however often it is read (issue 18: a fresh
worker re-read its first records after a rebalance and paged the dead-letter consumer
twice for one bad input)."""

from __future__ import annotations

from remediator.metrics import Tally
from remediator.pipeline.decode import dead_letter
from remediator.pipeline.handlers import MAX_DEAD_LETTER_MARKS
from remediator.pipeline.messages import InboxMessage, Unreadable
from tests.builders import T0
from tests.harness import Harness


def unreadable(offset: int, partition: int = 0, topic: str = "active") -> InboxMessage:
    letter = dead_letter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=b"\xffkey",
        payload=b"{not json",
        error="ActiveHealthCheckRun: not valid JSON",
        received_at=T0,
    )
    return InboxMessage(unreadable=Unreadable.of(letter, b"\xffkey"))


def test_a_bad_input_read_again_is_not_dead_lettered_again() -> None:
    harness = Harness()
    harness.apply(unreadable(7))
    harness.apply(unreadable(7))  # a re-seek, or another worker taking over
    (letter,) = harness.dead_letters()
    assert letter.key == b"\xffkey"  # the input's own key, bytes as they came


def test_the_same_input_twice_in_one_batch_is_dead_lettered_once() -> None:
    harness = Harness()
    batch = harness.apply(unreadable(7), unreadable(7))
    assert len(harness.dead_letters()) == 1
    assert batch.tally.dead_letters == {"active": 1}


def test_other_offsets_and_other_partitions_are_each_dead_lettered() -> None:
    harness = Harness()
    harness.apply(unreadable(7), unreadable(8), unreadable(7, partition=1))
    harness.apply(unreadable(6))  # an earlier record read late (after a seek back)
    assert len(harness.dead_letters()) == 4


def test_the_marks_are_bounded_to_the_newest_offsets() -> None:
    harness = Harness()
    harness.apply(*(unreadable(n) for n in range(MAX_DEAD_LETTER_MARKS + 10)))
    harness.apply(unreadable(MAX_DEAD_LETTER_MARKS + 9))  # still remembered
    assert len(harness.dead_letters()) == MAX_DEAD_LETTER_MARKS + 10


def test_the_tally_counts_each_dead_letter_once_for_the_metrics() -> None:
    tally = Tally()
    assert tally.dead_letters == {}
    harness = Harness()
    harness.apply(unreadable(1))
    second = harness.apply(unreadable(1), unreadable(2, topic="passive"))
    assert second.tally.dead_letters == {"passive": 1}
