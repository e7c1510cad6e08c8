"""What a simulated GPU fleet reports, one health signal at a time. Pure: no I/O, no clock.

The fleet is ``clusters`` by ``instances``. Each call of :meth:`FleetSimulator.next` with the
current time returns one signal, an ``ActiveHealthCheckRun`` or a ``PassiveHealthCheckEvent``
payload (``domain/models.py``), keyed by its instance id:

- a follow-up of a problem already under way whose time has come, first; else
- mostly a routine active test that passes (a few are skipped); with probability
  ``failure_rate`` a new problem on a healthy instance instead; with ``burst_rate`` a burst.

Problems, each on one instance, weighted by :data:`PROBLEM_WEIGHTS`:

- ``TEST_FAILURE``: a test fails and keeps failing on that instance (each routine run of
  the instance is that test, failed) until the fault heals, 10 to 30 minutes later;
- ``INTERMITTENT_TEST``: a test fails once, then passes within two minutes (auto-resolves);
- ``HARD_ALERT``: a critical alert fires (an xid 79 or 74, a GPU fallen off the bus, a
  read-only filesystem…) and fires again once or twice, never resolving while simulated;
- ``TRANSIENT_ALERT``: a critical alert fires and resolves within three minutes;
- ``FLAPPING_ALERT``: a critical alert fires and resolves three to six times in a row;
- ``WARNING``: a WARNING or INFO alert (recorded, never repaired) fires, later resolves.

A burst (a rack's InfiniBand rails going down) fires a critical alert on a third to a half
of one cluster's instances within 15 seconds, all resolving 3 to 10 minutes later: enough
to trip the cluster's blast-radius limit. The fifth fresh signal of a simulation always
starts a ``TEST_FAILURE``, so a new fleet shows a recommendation at once.

Randomness comes from ``random.Random(seed)``: a seed fixes the mix, the instances, the
times of follow-ups. Run and event ids come from ``ids`` (fresh UUIDs by default), so the
same seed run twice against one worker is not dropped as duplicates.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from remediator.domain.models import format_timestamp

#: Clusters get these names first, then ``cl-sim-<n>`` (none is the README's sample
#: cluster, ``cl-us-east-1a``, so that its examples work beside a simulation).
CLUSTER_NAMES = (
    "cl-us-west-2a",
    "cl-us-east-1b",
    "cl-eu-west-1c",
    "cl-ap-northeast-1a",
    "cl-us-central-1b",
    "cl-eu-north-1a",
)

#: Active tests, with a failure message (``{gpu}`` and ``{value}`` are filled in).
TESTS: dict[str, str] = {
    "DCGM_DIAG": "DCGM diag level 3: GPU {gpu} memory test failed",
    "GPU_BURN": "GPU {gpu} produced {value} miscompares under load",
    "NCCL_SINGLE_NODE": "all_reduce bus bandwidth {value} GB/s, below 380",
    "NVBANDWIDTH": "host to device bandwidth on GPU {gpu}: {value} GB/s, below 50",
    "IB_WRITE_BW": "mlx5_{gpu}: {value} Gb/s, below 380",
    "STORAGE_FIO": "random read {value}k IOPS on /scratch, below 50k",
}

Alert = tuple[str, dict[str, str]]

HARD_ALERTS: tuple[Alert, ...] = (
    ("DmesgXidError", {"xid": "79"}),
    ("DmesgXidError", {"xid": "74"}),
    ("DmesgXidError", {"xid": "48"}),
    ("DmesgGpuFallenOffBus", {}),
    ("GpuEccDoubleBitError", {}),
    ("GpuRowRemapFailure", {}),
    ("NpdReadonlyFilesystem", {"mount": "/"}),
    ("NpdXfsShutdown", {"device": "nvme0n1"}),
    ("NpdKernelDeadlock", {}),
    ("NpdCperHardwareErrorFatal", {}),
)
TRANSIENT_ALERTS: tuple[Alert, ...] = (
    ("KubeNodeMemoryPressure", {}),
    ("KubeNodePIDPressure", {}),
    ("NpdFrequentKubeletRestart", {}),
    ("GpuSmClockThermalThrottle", {}),
)
FLAPPING_ALERTS: tuple[Alert, ...] = (
    ("IBLinkFlapping", {"port": "mlx5_3/1"}),
    ("GpuPcieReplayRateHigh", {}),
    ("NpdFrequentContainerdRestart", {}),
)
#: (alert, severity): recorded by the policy, never repaired.
WARNING_ALERTS: tuple[tuple[Alert, str], ...] = (
    (("KubeNodeDiskPressure", {"mount": "/var/lib/containerd"}), "WARNING"),
    (("SlurmNodeUnavailable", {"reason": "drained: maintenance"}), "WARNING"),
    (("GpuSmClockThermalThrottle", {}), "WARNING"),
    (("DmesgXidError", {"xid": "13"}), "INFO"),
)
BURST_ALERT: Alert = ("IBRailsDownOrDegraded", {"rails_down": "2", "switch": "leaf-07"})


class Problem(enum.StrEnum):
    TEST_FAILURE = "TEST_FAILURE"
    INTERMITTENT_TEST = "INTERMITTENT_TEST"
    HARD_ALERT = "HARD_ALERT"
    TRANSIENT_ALERT = "TRANSIENT_ALERT"
    FLAPPING_ALERT = "FLAPPING_ALERT"
    WARNING = "WARNING"


PROBLEM_WEIGHTS: dict[Problem, int] = {
    Problem.TEST_FAILURE: 25,
    Problem.INTERMITTENT_TEST: 10,
    Problem.HARD_ALERT: 25,
    Problem.TRANSIENT_ALERT: 15,
    Problem.FLAPPING_ALERT: 10,
    Problem.WARNING: 15,
}
WARMUP_SIGNAL = 5  # the fresh signal that always starts a TEST_FAILURE


@dataclass(frozen=True)
class FleetConfig:
    """The simulated fleet's shape and how often things go wrong."""

    clusters: int = 3
    instances: int = 20  # per cluster
    failure_rate: float = 0.01  # share of fresh signals that start a problem
    burst_rate: float = 0.0005  # share of fresh signals that start a burst
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.clusters < 1 or self.instances < 1:
            raise ValueError("a fleet needs at least one cluster of at least one instance")
        for name in ("failure_rate", "burst_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1")
        if self.failure_rate + self.burst_rate > 1.0:
            raise ValueError("failure-rate and burst-rate add up to more than 1")


@dataclass(frozen=True)
class Instance:
    cluster_id: str
    instance_id: str
    name: str


@dataclass(frozen=True)
class Signal:
    """One payload for ``active-health-check-runs`` (``run``) or
    ``passive-health-check-events`` (``event``), keyed by its instance id."""

    kind: Literal["run", "event"]
    key: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Spec:
    """A follow-up signal, made when it is sent (so it carries the time it is sent at)."""

    instance: Instance
    kind: Literal["run", "event"]
    name: str  # the test or the alert
    outcome: str  # the run's result or the alert's status
    severity: str = "CRITICAL"
    annotations: dict[str, str] = field(default_factory=dict)


def cluster_name(index: int) -> str:
    return CLUSTER_NAMES[index] if index < len(CLUSTER_NAMES) else f"cl-sim-{index + 1}"


def _letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: a short tag per cluster for its instance ids."""
    tag = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        tag = chr(ord("a") + rest) + tag
    return tag


def fleet(config: FleetConfig) -> list[Instance]:
    """Every instance: ``inst-a000`` … in the first cluster, ``inst-b000`` … in the second."""
    return [
        Instance(cluster_name(c), f"inst-{_letters(c)}{i:03d}", f"gpu-node-{_letters(c)}{i:03d}")
        for c in range(config.clusters)
        for i in range(config.instances)
    ]


class FleetSimulator:
    """Signals of a simulated fleet, in the order a monitoring system would send them."""

    def __init__(self, config: FleetConfig, *, ids: Callable[[], str] | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - simulation, not secrets
        self.ids = ids or (lambda: str(uuid.uuid4()))
        self.instances = fleet(config)
        #: What was produced: "run PASSED", "event FIRING", "problem HARD_ALERT", "burst"…
        self.stats: Counter[str] = Counter()
        self._due: list[tuple[datetime, int, _Spec]] = []
        self._order = itertools.count()
        self._fresh = 0
        #: Instances with a problem under way: until when, and the test that keeps failing.
        self._faulty: dict[str, tuple[datetime, str | None]] = {}

    @property
    def pending(self) -> int:
        """Follow-ups scheduled and not yet sent."""
        return len(self._due)

    def next(self, now: datetime) -> Signal:
        """The next signal at ``now`` (timezone-aware)."""
        if self._due and self._due[0][0] <= now:
            return self._make(heapq.heappop(self._due)[2], now)
        self._fresh += 1
        draw = self.rng.random()
        if self._fresh == WARMUP_SIGNAL:
            started = self._start(Problem.TEST_FAILURE, now)
        elif draw < self.config.burst_rate:
            started = self._burst(now)
        elif draw < self.config.burst_rate + self.config.failure_rate:
            problem = self.rng.choices(list(PROBLEM_WEIGHTS), list(PROBLEM_WEIGHTS.values()))[0]
            started = self._start(problem, now)
        else:
            started = None
        return started or self._routine(now)

    # --- routine ------------------------------------------------------------------

    def _routine(self, now: datetime) -> Signal:
        instance = self.rng.choice(self.instances)
        test = self.rng.choice(list(TESTS))
        fault = self._faulty.get(instance.instance_id)
        if fault is not None and fault[0] <= now:
            del self._faulty[instance.instance_id]  # healed
            fault = None
        if fault is not None and fault[1] is not None:
            return self._make(_Spec(instance, "run", fault[1], "FAILED"), now)
        result = "SKIPPED" if self.rng.random() < 0.03 else "PASSED"
        return self._make(_Spec(instance, "run", test, result), now)

    # --- problems -----------------------------------------------------------------

    def _healthy(self, now: datetime, candidates: list[Instance] | None = None) -> Instance | None:
        pool = candidates if candidates is not None else self.instances
        for _ in range(10):
            instance = self.rng.choice(pool)
            fault = self._faulty.get(instance.instance_id)
            if fault is None or fault[0] <= now:
                return instance
        return None

    def _later(self, now: datetime, low: float, high: float) -> datetime:
        return now + timedelta(seconds=self.rng.uniform(low, high))

    def _schedule(self, at: datetime, spec: _Spec) -> None:
        heapq.heappush(self._due, (at, next(self._order), spec))

    def _start(self, problem: Problem, now: datetime) -> Signal | None:
        instance = self._healthy(now)
        if instance is None:
            return None
        self.stats[f"problem {problem.value}"] += 1
        if problem in (Problem.TEST_FAILURE, Problem.INTERMITTENT_TEST):
            test = self.rng.choice(list(TESTS))
            first = _Spec(instance, "run", test, "FAILED")
            if problem is Problem.TEST_FAILURE:
                self._faulty[instance.instance_id] = (self._later(now, 600, 1800), test)
            else:
                passes = self._later(now, 20, 120)
                self._schedule(passes, _Spec(instance, "run", test, "PASSED"))
                self._faulty[instance.instance_id] = (passes, None)
            return self._make(first, now)
        if problem is Problem.HARD_ALERT:
            name, notes = self.rng.choice(HARD_ALERTS)
            spec = _Spec(instance, "event", name, "FIRING", annotations=self._with_gpu(notes))
            at = now
            for _ in range(self.rng.randint(1, 2)):  # the same fault, seen again
                at = self._later(at, 60, 240)
                self._schedule(at, spec)
            self._faulty[instance.instance_id] = (self._later(now, 600, 1800), None)
            return self._make(spec, now)
        if problem is Problem.TRANSIENT_ALERT:
            name, notes = self.rng.choice(TRANSIENT_ALERTS)
            return self._fire_and_resolve(instance, name, notes, "CRITICAL", now, (30, 180))
        if problem is Problem.WARNING:
            (name, notes), severity = self.rng.choice(WARNING_ALERTS)
            return self._fire_and_resolve(instance, name, notes, severity, now, (60, 600))
        name, notes = self.rng.choice(FLAPPING_ALERTS)
        annotations = self._with_gpu(notes)
        at = now
        for flap in range(self.rng.randint(3, 6)):
            if flap:
                at = self._later(at, 10, 40)
                self._schedule(
                    at, _Spec(instance, "event", name, "FIRING", annotations=annotations)
                )
            at = self._later(at, 10, 40)
            self._schedule(at, _Spec(instance, "event", name, "RESOLVED", annotations=annotations))
        self._faulty[instance.instance_id] = (at, None)
        return self._make(_Spec(instance, "event", name, "FIRING", annotations=annotations), now)

    def _fire_and_resolve(
        self,
        instance: Instance,
        name: str,
        notes: dict[str, str],
        severity: str,
        now: datetime,
        within: tuple[float, float],
    ) -> Signal:
        annotations = self._with_gpu(notes)
        resolves = self._later(now, *within)
        fired = _Spec(instance, "event", name, "FIRING", severity, annotations)
        self._schedule(resolves, _Spec(instance, "event", name, "RESOLVED", severity, annotations))
        self._faulty[instance.instance_id] = (resolves, None)
        return self._make(fired, now)

    def _with_gpu(self, notes: dict[str, str]) -> dict[str, str]:
        return {"gpu": str(self.rng.randrange(8)), **notes}

    def _burst(self, now: datetime) -> Signal | None:
        cluster = cluster_name(self.rng.randrange(self.config.clusters))
        members = [i for i in self.instances if i.cluster_id == cluster]
        size = max(min(3, len(members)), round(len(members) * self.rng.uniform(0.33, 0.5)))
        chosen = [
            i
            for i in self.rng.sample(members, size)
            if i.instance_id not in self._faulty or self._faulty[i.instance_id][0] <= now
        ]
        if not chosen:
            return None
        self.stats["burst"] += 1
        name, notes = BURST_ALERT
        resolves = self._later(now, 180, 600)
        for index, instance in enumerate(chosen):
            fires = now if index == 0 else self._later(now, 0, 15)
            firing = _Spec(instance, "event", name, "FIRING", annotations=notes)
            if index:
                self._schedule(fires, firing)
            ends = self._later(resolves, 0, 30)
            self._schedule(ends, _Spec(instance, "event", name, "RESOLVED", annotations=notes))
            self._faulty[instance.instance_id] = (ends, None)
        return self._make(_Spec(chosen[0], "event", name, "FIRING", annotations=notes), now)

    # --- payloads -----------------------------------------------------------------

    def _make(self, spec: _Spec, now: datetime) -> Signal:
        instance = spec.instance
        common = {
            "cluster_id": instance.cluster_id,
            "instance_id": instance.instance_id,
            "instance_name": instance.name,
        }
        self.stats[f"{spec.kind} {spec.outcome}"] += 1
        if spec.kind == "run":
            payload: dict[str, Any] = {
                "run_id": self.ids(),
                **common,
                "test": spec.name,
                "result": spec.outcome,
                "started_at": format_timestamp(now - timedelta(seconds=self.rng.randint(30, 600))),
                "completed_at": format_timestamp(now),
            }
            if spec.outcome == "FAILED":
                payload["message"] = TESTS[spec.name].format(
                    gpu=self.rng.randrange(8), value=self.rng.randint(3, 40)
                )
            return Signal("run", instance.instance_id, payload)
        payload = {
            "event_id": self.ids(),
            **common,
            "alert_name": spec.name,
            "severity": spec.severity,
            "status": spec.outcome,
            "observed_at": format_timestamp(now),
            "annotations": dict(spec.annotations),
        }
        return Signal("event", instance.instance_id, payload)
