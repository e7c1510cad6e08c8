"""The fleet simulator's signals: valid payloads, a seeded mix, problems that play out."""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent
from remediator.simulation.fleet import options
from remediator.simulation.fleet.generator import (
    BURST_ALERT,
    FleetConfig,
    FleetSimulator,
    Problem,
    Signal,
    fleet,
)
from tests.builders import T0

RATE = 2.0  # signals per second, as `make run` sends them
N = 20_000  # about 2 h 45 min of a 60-instance fleet


def simulate(config: FleetConfig, n: int = N) -> list[tuple[datetime, Signal]]:
    counter = itertools.count()
    sim = FleetSimulator(config, ids=lambda: str(uuid.UUID(int=next(counter), version=4)))
    step = timedelta(seconds=1 / RATE)
    return [(T0 + i * step, sim.next(T0 + i * step)) for i in range(n)]


def shape(signal: Signal) -> tuple[object, ...]:
    """A signal without its id."""
    p = signal.payload
    return (
        signal.kind,
        signal.key,
        p.get("test") or p.get("alert_name"),
        p.get("result") or p.get("status"),
        p.get("severity"),
    )


@pytest.fixture(scope="module")
def stream() -> list[tuple[datetime, Signal]]:
    return simulate(FleetConfig(clusters=3, instances=20, seed=7))


def test_every_signal_is_a_valid_payload_keyed_by_its_instance_and_stamped_now(
    stream: list[tuple[datetime, Signal]],
) -> None:
    for now, signal in stream:
        if signal.kind == "run":
            parsed: ActiveHealthCheckRun | PassiveHealthCheckEvent = (
                ActiveHealthCheckRun.model_validate(signal.payload)
            )
            assert parsed.completed_at == now
        else:
            parsed = PassiveHealthCheckEvent.model_validate(signal.payload)
            assert parsed.observed_at == now
        assert signal.key == parsed.instance_id


def test_run_and_event_ids_are_unique_with_the_default_id_source() -> None:
    sim = FleetSimulator(FleetConfig(seed=1))
    ids = [
        s.payload.get("run_id") or s.payload["event_id"]
        for s in (sim.next(T0 + timedelta(seconds=i)) for i in range(5000))
    ]
    assert len(set(ids)) == len(ids)


def test_the_same_seed_gives_the_same_signals_and_another_seed_others() -> None:
    config = FleetConfig(clusters=2, instances=5, failure_rate=0.1, seed=42)
    first = [shape(s) for _, s in simulate(config, 3000)]
    again = [shape(s) for _, s in simulate(config, 3000)]
    other = [shape(s) for _, s in simulate(FleetConfig(clusters=2, instances=5, seed=43), 3000)]
    assert first == again
    assert first != other


def test_mostly_passing_runs_with_some_failures_and_every_kind_of_problem(
    stream: list[tuple[datetime, Signal]],
) -> None:
    outcomes = Counter(
        f"{s.kind} {s.payload.get('result') or s.payload['status']}" for _, s in stream
    )
    assert outcomes["run PASSED"] / N > 0.8
    assert 0 < outcomes["run SKIPPED"] < outcomes["run FAILED"]
    assert outcomes["event FIRING"] > 0
    assert outcomes["event RESOLVED"] > 0
    sim = FleetSimulator(FleetConfig(clusters=3, instances=20, seed=7))
    for i in range(N):
        sim.next(T0 + timedelta(seconds=i / RATE))
    started = {p: sim.stats[f"problem {p.value}"] for p in Problem}
    assert all(started.values()), started
    assert sim.stats["burst"] >= 1
    assert sim.stats["run PASSED"] == outcomes["run PASSED"]  # stats count what is sent


def test_the_fleet_is_every_instance_of_every_cluster() -> None:
    instances = fleet(FleetConfig(clusters=30, instances=4))
    assert len({i.instance_id for i in instances}) == 120
    assert len({i.cluster_id for i in instances}) == 30
    assert instances[0].cluster_id == "cl-us-west-2a"
    assert instances[0].instance_id == "inst-a000"
    assert instances[-1].cluster_id == "cl-sim-30"
    assert instances[-1].instance_id == "inst-ad003"


def test_a_new_fleet_fails_a_test_among_its_first_signals() -> None:
    for seed in range(20):
        first = [s for _, s in simulate(FleetConfig(failure_rate=0, burst_rate=0, seed=seed), 5)]
        failed = [s for s in first if s.payload.get("result") == "FAILED"]
        assert len(failed) == 1, seed


def test_an_alert_resolves_only_after_it_fired(stream: list[tuple[datetime, Signal]]) -> None:
    firing: set[tuple[str, str]] = set()
    for _, s in stream:
        if s.kind != "event":
            continue
        alert = (s.key, s.payload["alert_name"])
        if s.payload["status"] == "FIRING":
            firing.add(alert)
        else:
            assert alert in firing, alert


def test_some_alert_flaps(stream: list[tuple[datetime, Signal]]) -> None:
    episodes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _, s in stream:
        if s.kind == "event":
            episodes[(s.key, s.payload["alert_name"])].append(s.payload["status"])
    flapping = [
        statuses for statuses in episodes.values() if statuses[:6] == ["FIRING", "RESOLVED"] * 3
    ]
    assert flapping


def test_a_burst_fires_one_alert_on_a_third_of_a_cluster_within_seconds(
    stream: list[tuple[datetime, Signal]],
) -> None:
    burst = [
        (now, s)
        for now, s in stream
        if s.kind == "event"
        and s.payload["alert_name"] == BURST_ALERT[0]
        and s.payload["status"] == "FIRING"
    ]
    assert burst
    start, first = burst[0]
    together = {
        s.key
        for now, s in burst
        if now - start <= timedelta(seconds=30)
        and s.payload["cluster_id"] == first.payload["cluster_id"]
    }
    assert len(together) >= 20 / 3 - 1  # a third of 20, less those already faulty
    assert all(s.payload["severity"] == "CRITICAL" for _, s in burst)


def test_a_failing_test_keeps_failing_on_its_instance_until_it_heals(
    stream: list[tuple[datetime, Signal]],
) -> None:
    # The warm-up failure: every run of that instance in the next ten minutes is that test,
    # failed (a passing run of it would auto-resolve the recommendation at once).
    start, failed = next((now, s) for now, s in stream if s.payload.get("result") == "FAILED")
    after = [
        s
        for now, s in stream
        if s.key == failed.key and s.kind == "run" and start < now <= start + timedelta(minutes=10)
    ]
    assert after
    assert {(s.payload["test"], s.payload["result"]) for s in after} == {
        (failed.payload["test"], "FAILED")
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clusters", "0"], "at least one cluster"),
        (["--failure-rate", "1.5"], "failure-rate must be between 0 and 1"),
        (["--rate", "-1"], "--rate must not be negative"),
        (["--broker", "http://x"], "--broker"),
        (["--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_bad_simulator_options_are_refused_in_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options.check_extra(" ".join(argv))


def test_a_worker_s_simulator_takes_the_operators_options_last() -> None:
    argv = options.child_argv("kafka://b:9092", "http://h:1/healthz", ["--rate", "5"])
    args = argparse.ArgumentParser()
    options.add_arguments(args)
    parsed = args.parse_args(argv[argv.index("simulate") + 1 :])
    assert (parsed.broker, parsed.wait_ready, parsed.rate) == (
        "kafka://b:9092", "http://h:1/healthz", 5.0
    )  # fmt: skip
    assert parsed.progress == "lines"
