"""The reference model: the expected outcome, computed from the generated inputs alone.

Under the permissive test policy (tests/integration/conftest.py ``permissive_policy_text``:
no blast radius, no hourly budget; every failing signal a rule names opens, debounce 1),
with execution off or every remediation run to its end within the cooldown, the outcome of
a stream is simple and independent of order, repeats and kills:

- an instance with at least one failing signal gets exactly one remediation;
- an instance with only passing signals gets none;
- every bad input (not a valid signal) is one dead letter, at its own offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .generator import Signal


@dataclass
class Expected:
    #: "{cluster}/{instance}" keys that must get exactly one remediation.
    remediated: set[str] = field(default_factory=set)
    #: Keys that must get none.
    untouched: set[str] = field(default_factory=set)
    #: (topic, partition, offset) of every bad input the broker accepted.
    dead_letters: set[tuple[str, int, int]] = field(default_factory=set)

    def add(self, signals: Iterable[Signal]) -> None:
        for signal in signals:
            key = f"{signal.cluster_id}/{signal.instance_id}"
            if signal.failing:
                self.remediated.add(key)
                self.untouched.discard(key)
            elif key not in self.remediated:
                self.untouched.add(key)

    def add_bad(self, where: Iterable[tuple[str, int, int]]) -> None:
        self.dead_letters.update(where)
