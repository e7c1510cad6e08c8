"""The checks run after every scenario, against what really landed on the topics.

- every expected remediation exactly once: one creation (sequence 1) per expected
  instance, none for a healthy one;
- transition sequences contiguous per remediation (1..n, no gaps);
- repeats identical: the same ``transition_id`` always carries the same content;
- lag drained: the group committed up to the end of the input topics;
- dead letters: each bad input dead-lettered (at its own offset, with a reason), and
  nothing else.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition

from tests.integration.conftest import Names

from .kafka import Record, read_all, wait_drained
from .model import Expected

#: A dead letter keeps a bounded prefix of what came in: whatever the input, it stays
#: under Kafka's default 1 MB message limit (here: well under).
DEAD_LETTER_FITS = 512 * 1024


@dataclass
class Outcome:
    """The figures of one scenario, and every check that failed (empty: passed)."""

    scenario: str
    signals: int = 0
    faults: list[str] = field(default_factory=list)
    expected: int = 0
    found: int = 0
    duplicates: int = 0
    losses: int = 0
    dead_letters: int = 0
    dead_letters_expected: int = 0
    repeats: int = 0
    lag: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Instances that should have a remediation and have none.
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "signals": self.signals,
            "faults": self.faults,
            "expected": self.expected,
            "found": self.found,
            "duplicates": self.duplicates,
            "losses": self.losses,
            "dead_letters": self.dead_letters,
            "dead_letters_expected": self.dead_letters_expected,
            "repeats": self.repeats,
            "lag": self.lag,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
            "failures": self.failures,
            "notes": self.notes,
        }


async def wait_for_creations(
    bootstrap: str, topic: str, expected: set[str], timeout: float
) -> list[Record]:
    """Read the transitions until every expected instance has a creation (or timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        records = await read_all(bootstrap, topic, settle=1.5)
        created = {r.key.decode() for r in records if r.key and _sequence(r) == 1}
        if expected <= created or loop.time() > deadline:
            return records
        await asyncio.sleep(1.0)


def _sequence(record: Record) -> int:
    return int(orjson.loads(record.value)["sequence"])


async def check(
    outcome: Outcome,
    bootstrap: str,
    names: Names,
    expected: Expected,
    ends: dict[TopicPartition, int],
    timeout: float = 120.0,
) -> Outcome:
    """Fill ``outcome`` with the figures read back; add a failure per broken check."""
    outcome.expected = len(expected.remediated)
    outcome.dead_letters_expected = len(expected.dead_letters)
    outcome.lag = await wait_drained(bootstrap, names.app_id, ends, timeout)
    if outcome.lag:
        outcome.failures.append(f"lag not drained: {outcome.lag} records not committed")
    records = await wait_for_creations(bootstrap, names.transitions, expected.remediated, timeout)
    _check_transitions(outcome, [orjson.loads(r.value) for r in records], expected)
    _check_dead_letters(outcome, await read_all(bootstrap, names.dead_letter), expected)
    return outcome


def _check_transitions(outcome: Outcome, values: list[dict[str, Any]], expected: Expected) -> None:
    by_id: dict[str, dict[str, Any]] = {}
    sequences: dict[str, set[int]] = defaultdict(set)
    created: dict[str, set[str]] = defaultdict(set)
    for value in values:
        tid = value["transition_id"]
        if tid in by_id:
            outcome.repeats += 1
            if by_id[tid] != value:
                outcome.failures.append(f"transition {tid} repeated with other content")
            continue
        by_id[tid] = value
        rid = value["remediation_id"]
        sequences[rid].add(int(value["sequence"]))
        if value["from_state"] is None:
            record = value["remediation"]
            created[f"{record['cluster_id']}/{record['instance_id']}"].add(rid)
    for rid, seen in sequences.items():
        if seen != set(range(1, max(seen) + 1)):
            outcome.failures.append(f"remediation {rid}: sequences {sorted(seen)} not contiguous")
    outcome.found = sum(1 for key in expected.remediated if created.get(key))
    outcome.losses = outcome.expected - outcome.found
    outcome.duplicates = sum(len(rids) - 1 for rids in created.values() if rids)
    unexpected = sorted(k for k in created if k not in expected.remediated)
    if outcome.losses:
        missing = sorted(k for k in expected.remediated if not created.get(k))
        outcome.missing = missing
        outcome.failures.append(f"{outcome.losses} expected remediations missing: {missing[:5]}")
    if outcome.duplicates:
        outcome.failures.append(f"{outcome.duplicates} duplicate remediations")
    if unexpected:
        outcome.duplicates += len(unexpected)
        outcome.failures.append(f"remediations for healthy instances: {unexpected[:5]}")


def _check_dead_letters(outcome: Outcome, records: list[Record], expected: Expected) -> None:
    where: dict[tuple[str, int, int], str] = {}
    for record in records:
        value = orjson.loads(record.value)
        where[(value["source_topic"], value["partition"], value["offset"])] = value["error"]
    outcome.dead_letters = len(where)
    missing = expected.dead_letters - set(where)
    extra = set(where) - expected.dead_letters
    if missing:
        outcome.failures.append(
            f"{len(missing)} bad inputs not dead-lettered: {sorted(missing)[:5]}"
        )
    if extra:
        reasons = sorted({where[k] for k in extra})[:3]
        outcome.failures.append(f"{len(extra)} unexpected dead letters: {reasons}")
    if any(not error.strip() for error in where.values()):
        outcome.failures.append("a dead letter without a reason")
    largest = max((len(r.value) for r in records), default=0)
    if largest > DEAD_LETTER_FITS:
        outcome.failures.append(f"a dead letter of {largest} bytes: it must stay small")
    if records:
        outcome.notes.append(f"largest dead-letter record: {largest} bytes")
