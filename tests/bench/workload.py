"""The bench's input: a fleet of instances in clusters, and the signals sent about them.

Everything here is pure and seeded, so one run of the bench sends the same bytes to every
subject measured with them (the raw baseline and the worker get the same steady payloads).
A signal is a :class:`Message`: which input topic (``ACTIVE`` or ``PASSIVE``), its key
(the instance id, as monitoring would key it) and its JSON bytes.

Event times advance per instance, minutes apart, as a monitoring system would report them;
they start a day before the wall clock so the whole run stays in the recent past.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson

Kind = Literal["active", "passive"]
ACTIVE: Kind = "active"
PASSIVE: Kind = "passive"


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    key: bytes
    value: bytes
    #: The run id or event id in the payload (to match a transition to its signal).
    signal_id: str = ""


@dataclass(frozen=True)
class FleetSpec:
    """Instances spread over clusters whose sizes are drawn from ``[min_size, max_size]``."""

    instances: int
    min_size: int = 50
    max_size: int = 500
    seed: int = 1
    prefix: str = "c"

    def describe(self) -> str:
        sizes = (
            f"{self.min_size}"
            if self.min_size == self.max_size
            else f"{self.min_size}-{self.max_size}"
        )
        return f"{self.instances} instances in clusters of {sizes}"


@dataclass(frozen=True)
class SteadyMix:
    """Shares of the steady-state signals (the rest of 1.0 is failing signals)."""

    passing_runs: float = 0.55
    resolved_alerts: float = 0.22
    repeats: float = 0.20
    #: Event-time gap between an instance's consecutive signals, minutes.
    gap_minutes: tuple[float, float] = (1.0, 10.0)

    @property
    def failing(self) -> float:
        return max(0.0, 1.0 - self.passing_runs - self.resolved_alerts - self.repeats)

    def describe(self) -> str:
        return (
            f"passing runs {self.passing_runs:.0%}, resolved alerts {self.resolved_alerts:.0%}, "
            f"repeats {self.repeats:.0%}, failing {self.failing:.0%} (FAILED runs and CRITICAL "
            f"FIRING alerts, half each); {self.gap_minutes[0]:g}-{self.gap_minutes[1]:g} min "
            "of event time between an instance's signals"
        )


@dataclass(slots=True)
class Instance:
    cluster_id: str
    instance_id: str
    clock: datetime
    last: Message | None = None
    #: Sends no failing signal in the steady mix (a latency probe cluster keeps headroom).
    quiet: bool = False


@dataclass
class Fleet:
    instances: list[Instance]
    clusters: dict[str, list[Instance]] = field(default_factory=dict)

    @classmethod
    def build(cls, spec: FleetSpec, *, start: datetime | None = None) -> Fleet:
        rng = random.Random(spec.seed)
        origin = start or _default_start()
        instances: list[Instance] = []
        clusters: dict[str, list[Instance]] = {}
        number = 0
        while len(instances) < spec.instances:
            size = min(rng.randint(spec.min_size, spec.max_size), spec.instances - len(instances))
            cluster_id = f"{spec.prefix}{spec.seed}-{number:05d}"
            members = [
                Instance(
                    cluster_id,
                    f"{cluster_id}-i{n:04d}",
                    origin + timedelta(seconds=rng.uniform(0, 600)),
                )
                for n in range(size)
            ]
            clusters[cluster_id] = members
            instances.extend(members)
            number += 1
        return cls(instances, clusters)


def _default_start() -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(days=1)


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def active_run(rng: random.Random, instance: Instance, *, failed: bool) -> Message:
    run_id = _uuid(rng)
    payload = {
        "run_id": run_id,
        "cluster_id": instance.cluster_id,
        "instance_id": instance.instance_id,
        "instance_name": instance.instance_id,
        "test": "DCGM_DIAG",
        "result": "FAILED" if failed else "PASSED",
        "started_at": _ts(instance.clock - timedelta(minutes=2)),
        "completed_at": _ts(instance.clock),
        "message": "diag level 3 failed on GPU 2" if failed else "diag level 3 passed",
    }
    return Message(ACTIVE, instance.instance_id.encode(), orjson.dumps(payload), run_id)


def passive_event(rng: random.Random, instance: Instance, *, firing: bool) -> Message:
    event_id = _uuid(rng)
    payload = {
        "event_id": event_id,
        "cluster_id": instance.cluster_id,
        "instance_id": instance.instance_id,
        "instance_name": instance.instance_id,
        "alert_name": "GpuEccDoubleBitError" if firing else "GpuSmClockThermalThrottle",
        "severity": "CRITICAL",
        "status": "FIRING" if firing else "RESOLVED",
        "observed_at": _ts(instance.clock),
        "annotations": {"gpu": str(rng.randrange(8))},
    }
    return Message(PASSIVE, instance.instance_id.encode(), orjson.dumps(payload), event_id)


def failing_signal(rng: random.Random, instance: Instance) -> Message:
    """A signal the default policy opens a remediation for (when the cluster has room)."""
    if rng.random() < 0.5:
        return active_run(rng, instance, failed=True)
    return passive_event(rng, instance, firing=True)


def next_steady(rng: random.Random, instance: Instance, mix: SteadyMix) -> Message:
    """The instance's next signal: its clock advances unless the signal is a repeat."""
    draw = rng.random()
    if draw < mix.repeats and instance.last is not None:
        return instance.last
    instance.clock += timedelta(minutes=rng.uniform(*mix.gap_minutes))
    draw = rng.random() * (1.0 - mix.repeats)
    if draw < mix.passing_runs:
        message = active_run(rng, instance, failed=False)
    elif draw < mix.passing_runs + mix.resolved_alerts or instance.quiet:
        message = passive_event(rng, instance, firing=False)
    else:
        message = failing_signal(rng, instance)
    instance.last = message
    return message


def warm_up(fleet: Fleet, seed: int = 7) -> list[Message]:
    """One passing run per instance: makes the whole fleet known before a steady phase."""
    rng = random.Random(seed)
    messages = []
    for instance in fleet.instances:
        instance.clock += timedelta(minutes=1)
        instance.last = active_run(rng, instance, failed=False)
        messages.append(instance.last)
    return messages


def steady(fleet: Fleet, count: int, mix: SteadyMix, seed: int = 11) -> Iterator[Message]:
    """``count`` steady-state signals: rounds over the fleet in a shuffled order, so each
    instance's signals stay in order and minutes apart in event time."""
    rng = random.Random(seed)
    order = list(fleet.instances)
    sent = 0
    while sent < count:
        rng.shuffle(order)
        for instance in order[: count - sent]:
            yield next_steady(rng, instance, mix)
        sent += min(len(order), count - sent)


def storm(spec: FleetSpec, seed: int = 13) -> list[Message]:
    """The worst case: every signal a failing one for an instance never seen before, every
    instance of every cluster failing, the clusters' signals interleaved at random."""
    fleet = Fleet.build(spec)
    rng = random.Random(seed)
    order = list(fleet.instances)
    rng.shuffle(order)
    return [failing_signal(rng, instance) for instance in order]
