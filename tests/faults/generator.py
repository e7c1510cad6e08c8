"""Health signals with unique ids for the fault suite, built with tests/builders.py.

A fleet of instances in one cluster: "sick" ones get failing signals (a FAILED active run
or a CRITICAL firing alert a rule names), healthy ones only passing runs. Every signal has
a fresh UUID; duplicates are exact byte copies of an earlier signal (same id), as a
monitoring system re-sending would make them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from tests.builders import T0, event_payload, run_payload

ACTIVE = "active"
PASSIVE = "passive"


@dataclass(frozen=True)
class Signal:
    kind: str  # ACTIVE or PASSIVE: which input topic
    cluster_id: str
    instance_id: str
    failing: bool
    value: bytes
    signal_id: str  # run_id or event_id

    @property
    def key(self) -> bytes:
        return self.instance_id.encode()


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def failing_signal(cluster: str, instance: str, at: datetime, rng: random.Random) -> Signal:
    if rng.random() < 0.5:
        run = run_payload(
            cluster_id=cluster,
            instance_id=instance,
            instance_name=instance,
            result="FAILED",
            started_at=_ts(at - timedelta(minutes=2)),
            completed_at=_ts(at),
        )
        return Signal(ACTIVE, cluster, instance, True, orjson.dumps(run), run["run_id"])
    alert = event_payload(
        cluster_id=cluster, instance_id=instance, instance_name=instance, observed_at=_ts(at)
    )
    return Signal(PASSIVE, cluster, instance, True, orjson.dumps(alert), alert["event_id"])


def passing_signal(cluster: str, instance: str, at: datetime) -> Signal:
    run = run_payload(
        cluster_id=cluster,
        instance_id=instance,
        instance_name=instance,
        result="PASSED",
        started_at=_ts(at - timedelta(minutes=2)),
        completed_at=_ts(at),
        message="ok",
    )
    return Signal(ACTIVE, cluster, instance, False, orjson.dumps(run), run["run_id"])


@dataclass(frozen=True)
class Fleet:
    cluster: str
    sick: tuple[str, ...]
    healthy: tuple[str, ...]


def fleet(cluster: str, sick: int, healthy: int) -> Fleet:
    return Fleet(
        cluster,
        tuple(f"{cluster}-sick-{n:04d}" for n in range(sick)),
        tuple(f"{cluster}-ok-{n:04d}" for n in range(healthy)),
    )


def stream(
    shape: Fleet, rng: random.Random, passing_per_healthy: int = 2, start: datetime = T0
) -> list[Signal]:
    """One failing signal per sick instance, ``passing_per_healthy`` passing runs per healthy
    one, shuffled. Event times spread over an hour after ``start``."""
    signals = [
        failing_signal(shape.cluster, i, start + timedelta(seconds=rng.randrange(3600)), rng)
        for i in shape.sick
    ]
    signals += [
        passing_signal(shape.cluster, i, start + timedelta(seconds=rng.randrange(3600)))
        for i in shape.healthy
        for _ in range(passing_per_healthy)
    ]
    rng.shuffle(signals)
    return signals


def with_disorder(shape: Fleet, signals: list[Signal], rng: random.Random) -> list[Signal]:
    """Duplicates, late and out-of-order signals on top of ``signals``:

    - a third of all signals re-sent (byte copies), some right after, some at the end;
    - for every second sick instance, extra failing signals with event times up to a day
      *earlier* (late arrivals) produced after the first one (out of order);
    - for healthy instances, passing runs from hours earlier, at the end.
    """
    out = list(signals)
    for signal in rng.sample(signals, len(signals) // 3):
        out.insert(rng.randrange(len(out) + 1), signal)
    for instance in shape.sick[::2]:
        for _ in range(2):
            late = T0 - timedelta(seconds=rng.randrange(60, 86_400))
            out.append(failing_signal(shape.cluster, instance, late, rng))
    for instance in shape.healthy[::3]:
        out.append(passing_signal(shape.cluster, instance, T0 - timedelta(hours=6)))
    out += rng.sample(signals, len(signals) // 10)
    return out
