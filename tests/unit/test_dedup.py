"""The bounded dedup memory: exact for what it calls new, stale for what it forgot."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

from remediator.domain.dedup import RecentIds
from tests.builders import T0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def remember(*entries: tuple[str, float], limit: int = 3) -> RecentIds:
    memory = RecentIds()
    for key, minute in entries:
        memory = memory.add(key, at(minute), limit=limit, horizon=None)
    return memory


def test_a_remembered_id_is_found_and_a_new_one_is_not() -> None:
    memory = remember(("run:a", 0), ("run:b", 1))
    assert "run:a" in memory
    assert "run:b" in memory
    assert "run:c" not in memory
    assert len(memory) == 2
    assert not memory.is_stale(at(-100))  # nothing forgotten yet: nothing is stale


def test_beyond_the_limit_the_oldest_by_event_time_is_forgotten_and_marks_the_floor() -> None:
    # Arrival order is not event-time order: "c" is the oldest.
    memory = remember(("run:a", 5), ("run:b", 7), ("run:c", 1), ("run:d", 9))
    assert "run:c" not in memory
    assert {k for k in ("run:a", "run:b", "run:d") if k in memory} == {"run:a", "run:b", "run:d"}
    assert memory.is_stale(at(1))  # the forgotten one (or anything as old) is stale
    assert memory.is_stale(at(0))
    assert not memory.is_stale(at(2))  # newer than all forgotten: decided exactly


def test_the_ttl_horizon_forgets_by_age_too() -> None:
    memory = remember(("run:a", 0), ("run:b", 10), limit=100)
    memory = memory.add("run:c", at(20), limit=100, horizon=at(5))
    assert "run:a" not in memory
    assert memory.is_stale(at(0))
    assert "run:b" in memory


def test_the_memory_round_trips_through_json() -> None:
    memory = remember(("run:a", 0), ("run:b", 10), ("run:c", 20), ("run:d", 30))
    restored = RecentIds.model_validate_json(memory.model_dump_json())
    assert restored == memory
    assert "run:d" in restored
    assert restored.is_stale(at(0))


def test_no_repeat_is_ever_counted_twice_whatever_the_order() -> None:
    """Property: replaying any stream of ids in any order, every id is counted new at
    most once; an id counted new is never also older than a forgotten one."""
    rng = random.Random(7)
    for _ in range(200):
        ids = [(f"run:{n}", rng.uniform(0, 100)) for n in range(12)]
        stream = ids + [rng.choice(ids) for _ in range(20)]
        rng.shuffle(stream)
        memory, counted = RecentIds(), []
        for key, minute in stream:
            if key in memory or memory.is_stale(at(minute)):
                continue
            counted.append(key)
            memory = memory.add(key, at(minute), limit=4, horizon=None)
        assert len(counted) == len(set(counted)), counted
        assert len(memory) <= 4


def test_in_order_ids_are_all_new_and_memory_stays_bounded() -> None:
    memory = RecentIds()
    for n in itertools.islice(itertools.count(), 1000):
        key = f"run:{n}"
        assert key not in memory
        assert not memory.is_stale(at(n))
        memory = memory.add(key, at(n), limit=32, horizon=None)
    assert len(memory) == 32
    assert len(memory.model_dump_json()) < 1000
