"""Cluster-wide safety: blast radius with hysteresis, rate budget, pause; decided on the
spot by the owner of the cluster's partition, from counts derived from the instances'
own records. Pure core plus the in-memory handlers; explicit times, no sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from remediator.domain import safety
from remediator.domain.commands import Command, CommandKind
from remediator.domain.models import PolicyEventKind, RemediationMode, RemediationState
from remediator.domain.policy import DEFAULT_POLICY, BlastRadius, Policy
from remediator.domain.safety import ClusterRecord, ClusterView, ControlKind, Proposal
from remediator.domain.state import InstanceState
from remediator.pipeline.fleet import ClusterModel
from remediator.pipeline.messages import InboxMessage, Route
from tests.builders import T0, run
from tests.harness import Harness

K = PolicyEventKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def policy(**changes: object) -> Policy:
    radius = BlastRadius(max_open=10, max_percent=30, min_allowed=1, resume_fraction=0.5)
    return Policy(blast_radius=radius, rate_budget_per_hour=0).model_copy(update=changes)


def known(harness: Harness, count: int, minute: float = 0) -> None:
    """``count`` instances of cluster c1 seen healthy: they count for the percentage."""
    harness.signal(
        *(run(instance_id=f"i{n}", result="PASSED", completed_at=iso(minute)) for n in range(count))
    )


def fail(harness: Harness, instances: list[str], minute: float = 1) -> list[str]:
    """A failing run on each; the outcome of each, from the explain log."""
    harness.signal(*(run(instance_id=i, completed_at=iso(minute)) for i in instances))
    return [
        "OPENED" if (s := harness.state("c1", i)) is not None and s.open else "BLOCKED"
        for i in instances
    ]


@pytest.mark.parametrize(
    ("count", "limit"), [(0, 1), (3, 1), (10, 3), (20, 6), (100, 10), (1000, 10)]
)
def test_the_limit_is_the_smaller_of_count_and_percentage_but_at_least_min(
    count: int, limit: int
) -> None:
    assert BlastRadius(max_open=10, max_percent=30, min_allowed=1).limit(count) == limit


def test_a_storm_trips_the_limit_once_with_an_event_then_refuses() -> None:
    harness = Harness(policy())
    known(harness, 20)  # limit 6 (30 % of 20)
    outcomes = fail(harness, [f"i{n}" for n in range(9)])
    assert outcomes == ["OPENED"] * 6 + ["BLOCKED"] * 3
    assert [e.kind for e in harness.events()] == [K.BLAST_RADIUS_TRIPPED]
    tripped = harness.events()[0]
    assert tripped.cluster_id == "c1"
    assert tripped.instance_id == "i6"
    assert "limit 6" in tripped.reason
    view = harness.command(CommandKind.SAFETY, instance_id="-", route=Route.CLUSTER).safety
    assert view is not None
    assert view.tripped_at is not None
    assert len(view.unhealthy_instances) == 6
    assert (view.known_instances, view.limit, view.resume_at) == (20, 6, 3)


def test_every_instance_seen_counts_as_known_even_the_one_failing_now() -> None:
    harness = Harness(policy(blast_radius=BlastRadius(max_open=10, max_percent=50)))
    known(harness, 3)
    # Four known (three healthy and the new one): 50 % admits two.
    assert fail(harness, ["new-1", "i0", "i1"]) == ["OPENED", "OPENED", "BLOCKED"]


def test_hysteresis_resumes_only_at_the_lower_mark_with_an_event() -> None:
    # Without the admission queue: the refused ones are dropped (test_admission_queue.py
    # has the queue's side of the same story).
    harness = Harness(policy(admission_queue_max=0))
    known(harness, 20)
    fail(harness, [f"i{n}" for n in range(7)])  # six open, the seventh trips it
    open_ids = {n: harness.state("c1", f"i{n}").open.remediation.id for n in range(6)}  # type: ignore[union-attr]
    for n in range(3):
        harness.command(
            CommandKind.REJECT, instance_id=f"i{n}", remediation_id=open_ids[n], now=at(2)
        )
        if n < 2:  # 5, then 4 unhealthy: above the resume mark of 3, still tripped
            assert fail(harness, ["i19"], minute=2 + n) == ["BLOCKED"]
            assert (
                "resumes at 3"
                in harness.command(CommandKind.EXPLAIN, instance_id="i19")
                .explanation.decisions[0]
                .reason
            )  # type: ignore[union-attr]
    assert [e.kind for e in harness.events()] == [K.BLAST_RADIUS_TRIPPED, K.BLAST_RADIUS_RESUMED]
    assert fail(harness, ["i19"], minute=5) == ["OPENED"]


def test_the_resumed_event_has_the_same_id_when_worked_out_again() -> None:
    """Level-triggered: the resume is recomputed from the counts (after a crash, by a new
    owner) and publishes the same event id."""
    record = ClusterRecord(cluster_id="c1", tripped_at=at(1))
    view = ClusterView(record=record, known=20, unhealthy=2)
    first = safety.reconcile(view, policy(), at(2))
    second = safety.reconcile(view, policy(), at(9))
    assert first[0].tripped_at is None
    assert [e.event_id for e in first[1]] == [e.event_id for e in second[1]]


def test_the_hourly_budget_refuses_beyond_it_and_refills_on_event_time() -> None:
    harness = Harness(policy(rate_budget_per_hour=2, admission_queue_max=0))
    known(harness, 100)
    outcomes = [
        fail(harness, [instance], minute)[0]
        for minute, instance in [(1, "i1"), (10, "i2"), (20, "i3"), (62, "i4")]
    ]
    assert outcomes == ["OPENED", "OPENED", "BLOCKED", "OPENED"]
    reason = harness.command(CommandKind.EXPLAIN, instance_id="i3").explanation.decisions[0].reason  # type: ignore[union-attr]
    assert "rate budget: 2 opened in the last hour, budget 2" in reason


def test_a_spent_budget_and_its_refill_are_policy_events_once_each() -> None:
    harness = Harness(policy(rate_budget_per_hour=1, admission_queue_max=0))
    known(harness, 100)
    assert fail(harness, ["i1"], 1) == ["OPENED"]
    assert fail(harness, ["i2", "i3"], 5) == ["BLOCKED", "BLOCKED"]  # one event, not two
    budget_events = [
        e
        for e in harness.events()
        if e.kind in (PolicyEventKind.RATE_BUDGET_EXHAUSTED, PolicyEventKind.RATE_BUDGET_RESTORED)
    ]
    assert [e.kind for e in budget_events] == [PolicyEventKind.RATE_BUDGET_EXHAUSTED]
    assert budget_events[0].instance_id == "i2"
    assert "rate budget: 1 opened in the last hour, budget 1" in budget_events[0].reason

    # An hour after the admission (event time), the next signal of the cluster finds room.
    known(harness, 1, minute=62)
    kinds = [e.kind for e in harness.events()]
    assert kinds.count(PolicyEventKind.RATE_BUDGET_RESTORED) == 1
    assert kinds.count(PolicyEventKind.RATE_BUDGET_EXHAUSTED) == 1
    assert fail(harness, ["i4"], 63) == ["OPENED"]
    # Replayed (the same inputs again): the same events, by id.
    ids = {e.event_id for e in harness.events()}
    assert len(ids) == len(harness.events())


def test_the_safety_view_counts_the_budget_on_the_clusters_event_time() -> None:
    harness = Harness(policy(rate_budget_per_hour=5))
    known(harness, 10)
    fail(harness, ["i1"], minute=0)
    # Hours later by the clock, but no newer signal: the view counts on event time.
    view = harness.command(
        CommandKind.SAFETY, instance_id="-", route=Route.CLUSTER, now=at(600)
    ).safety
    assert view is not None
    assert view.opened_last_hour == 1
    assert view.as_of == at(0)


def test_the_safety_view_lists_the_opted_out_instances_with_why() -> None:
    harness = Harness(policy())
    known(harness, 3)
    harness.command(CommandKind.OPT_OUT, instance_id="i2", reason="customer debugging")

    def opted_out() -> dict[str, tuple[str, str]]:
        view = harness.command(CommandKind.SAFETY, instance_id="-", route=Route.CLUSTER).safety
        assert view is not None
        return {i: (o.reason, o.by) for i, o in view.opted_out.items()}

    assert opted_out() == {"i2": ("customer debugging", "alice")}
    harness.command(CommandKind.OPT_IN, instance_id="i2")
    assert opted_out() == {}


def test_a_paused_cluster_admits_nothing_until_resumed() -> None:
    harness = Harness(policy())
    known(harness, 10)
    paused = harness.command(
        CommandKind.PAUSE, instance_id="-", route=Route.CLUSTER, reason="rack maintenance"
    )
    assert paused.safety is not None
    assert paused.safety.paused is not None
    assert fail(harness, ["i1"]) == ["BLOCKED"]
    reason = harness.command(CommandKind.EXPLAIN, instance_id="i1").explanation.decisions[0].reason  # type: ignore[union-attr]
    assert "paused by alice: rack maintenance" in reason
    harness.command(CommandKind.RESUME, instance_id="-", route=Route.CLUSTER, principal="bob")
    assert fail(harness, ["i2"], minute=2) == ["OPENED"]
    assert [e.kind for e in harness.events()] == [K.CLUSTER_PAUSED, K.CLUSTER_RESUMED]


def test_a_pause_is_written_in_order_with_the_instances_it_governs() -> None:
    harness = Harness(policy())
    known(harness, 10)
    pause = Command(
        command_id="pause-1",
        kind=CommandKind.PAUSE,
        cluster_id="c1",
        instance_id="-",
        principal="alice",
        issued_at=T0,
        reason="maintenance",
    )
    batch = harness.apply(
        InboxMessage.of_signal(run(instance_id="i1", completed_at=iso(1))),
        InboxMessage(command=pause, route=Route.CLUSTER),
        InboxMessage.of_signal(run(instance_id="i2", completed_at=iso(1))),
    )
    assert [(w.store.name, w.key) for w in batch.writes] == [
        ("state", b"c1/i1"),
        ("state", b"c1"),
        ("state", b"c1/i2"),
    ]


def test_a_manual_remediation_never_counts_against_the_blast_radius() -> None:
    harness = Harness(policy(blast_radius=BlastRadius(max_open=1, max_percent=100)))
    known(harness, 10)
    harness.command(CommandKind.CREATE, instance_id="i5", remediation_id="manual-1")
    assert fail(harness, ["i1"]) == ["OPENED"]
    assert fail(harness, ["i2"]) == ["BLOCKED"]


def test_the_counts_follow_each_instances_own_record() -> None:
    """Derived counts: replacing an instance's record moves its contributions, so they
    can never drift from the records (whatever a crash left half-written)."""
    harness = Harness(
        policy(rate_budget_per_hour=10, blast_radius=BlastRadius(max_open=10, max_percent=100))
    )
    known(harness, 4)
    fail(harness, ["i1", "i2"])
    model = harness.fleet.find(0, "c1")
    assert model is not None
    assert model.unhealthy == {"i1", "i2"}
    assert len(model.admissions) == 2
    rebuilt = ClusterModel("c1", model.record)
    for state in model.instances.values():
        rebuilt.put(InstanceState.model_validate_json(state.model_dump_json()))
    assert (rebuilt.unhealthy, rebuilt.admissions) == (model.unhealthy, model.admissions)
    state = model.get("i1")
    assert state is not None
    assert state.open is not None
    harness.command(CommandKind.REJECT, instance_id="i1", remediation_id=state.open.remediation.id)
    assert model.unhealthy == {"i2"}
    assert len(model.admissions) == 2  # the budget remembers the admission all the same


def test_admission_pure_rules_in_order() -> None:
    record = ClusterRecord(cluster_id="c1")
    proposal = Proposal("c1", "i1", "r1", "rule", RemediationMode.REBOOT_VM, at(0))
    view = ClusterView(record=record, known=10, unhealthy=0)
    assert safety.admit(view, proposal, policy(), at(0)).admitted
    paused, _ = safety.control(
        record, ControlKind.PAUSE, reason="r", principal="p", now=at(0), cause="c"
    )
    refused = safety.admit(
        ClusterView(record=paused, known=10, unhealthy=0), proposal, policy(), at(0)
    )
    assert not refused.admitted
    full = safety.admit(
        ClusterView(record=record, known=10, unhealthy=3), proposal, policy(), at(0)
    )
    assert not full.admitted
    assert full.record.tripped_at == at(0)
    assert [e.kind for e in full.events] == [K.BLAST_RADIUS_TRIPPED]


def test_closing_an_open_remediation_frees_the_instance_for_a_new_one() -> None:
    harness = Harness(policy(cooldown_minutes=0))
    known(harness, 10)
    fail(harness, ["i1"])
    state = harness.state("c1", "i1")
    assert state is not None
    assert state.open is not None
    harness.command(CommandKind.REJECT, instance_id="i1", remediation_id=state.open.remediation.id)
    assert harness.state("c1", "i1").open is None  # type: ignore[union-attr]
    assert harness.archived("c1", "i1")[0]["state"] == RemediationState.CANCELLED.value
    assert fail(harness, ["i1"], minute=2) == ["OPENED"]


def test_the_docs_limit_per_cluster_size_is_the_default_policys() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "policy.md"
    readme = page.read_text()
    sizes_line, _, allowed_line = readme.split("| known instances |", 1)[1].splitlines()[:3]
    sizes = [c.strip() for c in sizes_line.strip(" |").split("|")]
    allowed = [int(c) for c in allowed_line.split("|")[2:-1]]
    radius = DEFAULT_POLICY.blast_radius
    dash = "\N{EN DASH}"
    for size, limit in zip(sizes, allowed, strict=True):
        low = int(size.replace(dash, " ").split()[0])
        high = int(size.split(dash)[1]) if dash in size else 1000
        assert {radius.limit(n) for n in range(low, high + 1)} == {limit}, size


def test_no_room_is_only_said_when_admission_would_refuse() -> None:
    """The queue's shortcut (safety.no_room) never says "full" where admit() would open:
    random clusters, every combination of pause, trip, counts and budget."""
    import random

    rng = random.Random(7)
    for _ in range(2000):
        rules = policy(rate_budget_per_hour=rng.choice([0, 1, 3, 20]))
        clock = at(rng.uniform(0, 180))
        admissions = sorted(at(rng.uniform(0, 180)) for _ in range(rng.randrange(0, 6)))
        record = ClusterRecord(
            cluster_id="c1",
            tripped_at=rng.choice([None, at(0)]),
            paused=None,
        )
        known_count, unhealthy = rng.randrange(0, 60), rng.randrange(0, 15)
        record, _ = safety.reconcile(
            ClusterView(record, known_count, unhealthy, admissions, clock), rules, clock
        )
        view = ClusterView(record, known_count, unhealthy, admissions, clock)
        proposal = Proposal("c1", "i1", "r1", "rule", RemediationMode.REBOOT_VM, clock)
        full = safety.no_room(record, known_count, unhealthy, admissions, clock, rules)
        admitted = safety.admit(view, proposal, rules, clock, queued=True).admitted
        assert not (full and admitted), (record, known_count, unhealthy, admissions, clock)
