"""Cluster-wide safety in the pure core: blast radius with hysteresis, rate budget, pause,
and the instance side of the admission protocol. Explicit times, no sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from remediator.domain import correlate, safety
from remediator.domain.correlate import CorrelationConfig, InstanceState, Outcome, decide
from remediator.domain.models import PolicyEventKind, RemediationState
from remediator.domain.policy import BlastRadius, Policy
from remediator.domain.safety import (
    AdmissionKind,
    AdmissionRequest,
    AdmissionVerdict,
    ClusterSafety,
    ControlKind,
)
from tests.builders import T0, event, run

K = AdmissionKind
NOW = T0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def policy() -> Policy:
    radius = BlastRadius(max_open=10, max_percent=30, min_allowed=1, resume_fraction=0.5)
    return Policy(blast_radius=radius, rate_budget_per_hour=0)


def request(kind: AdmissionKind, instance: str, minute: float = 0) -> AdmissionRequest:
    return AdmissionRequest(
        kind=kind,
        cluster_id="c1",
        instance_id=instance,
        remediation_id=f"r-{instance}",
        rule="reboot-faults",
        at=at(minute),
    )


def registered(n: int) -> ClusterSafety:
    state = None
    for i in range(n):
        state = safety.handle(state, request(K.REGISTER, f"i{i}"), policy(), NOW).safety
    assert state is not None
    return state


def propose_all(
    state: ClusterSafety, instances: list[str], p: Policy
) -> tuple[ClusterSafety, list[bool], list[PolicyEventKind]]:
    admitted, events = [], []
    for instance in instances:
        result = safety.handle(state, request(K.PROPOSE, instance), p, NOW)
        state = result.safety
        admitted += [v.admitted for v in result.verdicts]
        events += [e.kind for e in result.events]
    return state, admitted, events


@pytest.mark.parametrize(
    ("known", "limit"), [(0, 1), (3, 1), (10, 3), (20, 6), (100, 10), (1000, 10)]
)
def test_the_limit_is_the_smaller_of_count_and_percentage_but_at_least_min(
    known: int, limit: int
) -> None:
    assert BlastRadius(max_open=10, max_percent=30, min_allowed=1).limit(known) == limit


def test_a_storm_trips_the_limit_once_with_an_event_then_refuses() -> None:
    state = registered(20)  # limit 6 (30 % of 20)
    storm = [f"i{i}" for i in range(9)]
    state, admitted, events = propose_all(state, storm, policy())
    assert admitted == [True] * 6 + [False] * 3
    assert events == [PolicyEventKind.BLAST_RADIUS_TRIPPED]
    assert state.tripped_at is not None
    assert len(state.unhealthy) == 6


def test_hysteresis_resumes_only_at_the_lower_mark_with_an_event() -> None:
    state = registered(20)
    state, _, _ = propose_all(state, [f"i{i}" for i in range(7)], policy())  # trips at 7th
    resumed_events = []
    for i in range(6):
        result = safety.handle(state, request(K.CLOSE, f"i{i}"), policy(), NOW)
        state = result.safety
        resumed_events.append([e.kind for e in result.events])
        if i < 2:
            # 5, then 4 unhealthy: above the resume mark of 3, still tripped
            assert state.tripped_at is not None
            refused = safety.handle(state, request(K.PROPOSE, "i19"), policy(), NOW)
            assert not refused.verdicts[0].admitted
            assert "resumes at 3" in refused.verdicts[0].reason
    assert resumed_events[2] == [PolicyEventKind.BLAST_RADIUS_RESUMED]  # 3 left
    assert state.tripped_at is None
    state, admitted, _ = propose_all(state, ["i19"], policy())
    assert admitted == [True]


def test_a_repeated_proposal_gets_the_same_answer_and_counts_once() -> None:
    state = registered(20)
    first = safety.handle(state, request(K.PROPOSE, "i1"), policy(), NOW)
    again = safety.handle(first.safety, request(K.PROPOSE, "i1"), policy(), NOW)
    assert again.verdicts == first.verdicts
    assert again.safety == first.safety
    closed = safety.handle(again.safety, request(K.CLOSE, "i1"), policy(), NOW).safety
    assert safety.handle(closed, request(K.CLOSE, "i1"), policy(), NOW).safety == closed


def test_the_hourly_budget_refuses_beyond_it_and_refills_on_event_time() -> None:
    p = policy().model_copy(update={"rate_budget_per_hour": 2})
    state = registered(100)
    results = []
    for minute, instance in [(0, "i1"), (10, "i2"), (20, "i3"), (61, "i4")]:
        result = safety.handle(state, request(K.PROPOSE, instance, minute), p, NOW)
        state = result.safety
        results.append(result.verdicts[0])
    assert [v.admitted for v in results] == [True, True, False, True]
    assert "rate budget" in results[2].reason


def test_a_paused_cluster_admits_nothing_until_resumed() -> None:
    state = registered(10)
    paused = safety.control(
        state,
        "c1",
        ControlKind.PAUSE,
        reason="rack maintenance",
        principal="alice",
        now=NOW,
        cause="x",
    )
    assert [e.kind for e in paused.events] == [PolicyEventKind.CLUSTER_PAUSED]
    refused = safety.handle(paused.safety, request(K.PROPOSE, "i1"), policy(), NOW)
    assert not refused.verdicts[0].admitted
    assert "paused by alice: rack maintenance" in refused.verdicts[0].reason
    resumed = safety.control(
        refused.safety, "c1", ControlKind.RESUME, reason="", principal="bob", now=NOW, cause="y"
    )
    assert [e.kind for e in resumed.events] == [PolicyEventKind.CLUSTER_RESUMED]
    assert (
        safety.handle(resumed.safety, request(K.PROPOSE, "i2"), policy(), NOW).verdicts[0].admitted
    )


# -- the instance side --------------------------------------------------------------------

ADMISSION = CorrelationConfig(cluster_admission=True)


def verdict(state: InstanceState, admitted: bool, reason: str = "ok") -> AdmissionVerdict:
    assert state.proposal is not None
    return AdmissionVerdict(
        remediation_id=state.proposal.remediation.id,
        cluster_id="c1",
        instance_id="i1",
        admitted=admitted,
        reason=reason,
    )


def test_an_instance_registers_once_and_proposes_instead_of_opening() -> None:
    first = decide(None, run(result="PASSED"), NOW, ADMISSION)
    assert [r.kind for r in first.requests] == [K.REGISTER]
    proposed = decide(first.state, run(), NOW, ADMISSION)
    assert proposed.outcome is Outcome.PROPOSED
    assert proposed.transitions == ()
    assert [r.kind for r in proposed.requests] == [K.PROPOSE]
    admitted = correlate.apply_verdict(
        proposed.state, verdict(proposed.state, True), NOW, ADMISSION
    )
    assert admitted.outcome is Outcome.OPENED
    assert [t.to_state for t in admitted.transitions] == [RemediationState.PENDING_APPROVAL]
    assert admitted.state.proposal is None
    # The verdict again (redelivery): nothing more.
    again = correlate.apply_verdict(admitted.state, verdict(proposed.state, True), NOW, ADMISSION)
    assert again.transitions == ()
    assert again.requests == ()


def test_signals_while_waiting_join_the_proposal_and_a_refusal_is_explained() -> None:
    state = decide(None, event(alert_name="NpdKernelDeadlock"), NOW, ADMISSION).state
    state = decide(state, event(alert_name="NpdKernelDeadlock"), NOW, ADMISSION).state
    assert state.proposal is not None
    assert len(state.proposal.remediation.signals) == 2
    refused = correlate.apply_verdict(
        state, verdict(state, False, "blast radius: full"), NOW, ADMISSION
    )
    assert refused.outcome is Outcome.BLOCKED
    assert refused.state.proposal is None
    assert refused.state.open is None
    assert "blast radius: full" in refused.state.decisions[0].reason


def test_a_proposal_whose_signal_clears_opens_and_auto_resolves_when_admitted() -> None:
    state = decide(None, event(alert_name="NpdKernelDeadlock"), NOW, ADMISSION).state
    cleared = decide(
        state, event(alert_name="NpdKernelDeadlock", status="RESOLVED"), NOW, ADMISSION
    )
    assert cleared.outcome is Outcome.RESOLVED
    assert cleared.requests == ()
    admitted = correlate.apply_verdict(cleared.state, verdict(state, True), NOW, ADMISSION)
    assert [t.event for t in admitted.transitions] == ["CREATE_AUTOMATED", "AUTO_RESOLVE"]
    assert admitted.state.open is None
    assert admitted.state.closed[0].state is RemediationState.AUTO_RESOLVED
    # Its end starts the cooldown, and gives its count back to the cluster.
    assert [r.kind for r in safety.requests_for(list(admitted.transitions))] == [K.CLOSE]


def test_an_automated_remediation_ending_closes_its_count() -> None:
    state = decide(None, run(), NOW, CorrelationConfig()).state
    assert state.open is not None
    _, t = correlate.record_change(
        state, state.open.remediation, correlate.Event.REJECT, now=NOW, actor="a", reason="no"
    )
    assert [r.kind for r in safety.requests_for([t])] == [K.CLOSE]


def test_a_manual_remediation_opened_while_a_proposal_waits_keeps_one_open() -> None:
    """Invariant 1 across the admission round trip: the operator's remediation wins, the
    late admission opens nothing and gives its count back."""
    from remediator.domain.commands import Command, CommandKind, handle

    proposed = decide(None, run(), NOW, ADMISSION).state
    create = Command(
        command_id="c1",
        kind=CommandKind.CREATE,
        cluster_id="c1",
        instance_id="i1",
        principal="alice",
        issued_at=NOW,
        remediation_id="manual-1",
    )
    manual = handle(proposed, create, NOW).state
    assert manual.open is not None
    admitted = correlate.apply_verdict(manual, verdict(proposed, True), NOW, ADMISSION)
    assert admitted.transitions == ()
    assert admitted.outcome is Outcome.BLOCKED
    assert [r.kind for r in admitted.requests] == [K.CLOSE]
    assert admitted.state.open is not None
    assert admitted.state.open.remediation.id == "manual-1"


def test_a_proposal_still_unanswered_a_minute_later_is_asked_again_once() -> None:
    state = decide(None, event(alert_name="NpdKernelDeadlock"), NOW, ADMISSION).state
    assert state.proposal is not None
    rid = state.proposal.remediation.id
    soon = decide(
        state,
        event(alert_name="NpdKernelDeadlock", observed_at="2026-11-24T12:00:30Z"),
        NOW,
        ADMISSION,
    )
    assert soon.requests == ()
    later = decide(
        soon.state,
        event(alert_name="NpdKernelDeadlock", observed_at="2026-11-24T12:01:30Z"),
        NOW,
        ADMISSION,
    )
    assert [(r.kind, r.remediation_id) for r in later.requests] == [(K.PROPOSE, rid)]
    again = decide(
        later.state,
        event(alert_name="NpdKernelDeadlock", observed_at="2026-11-24T12:01:40Z"),
        NOW,
        ADMISSION,
    )
    assert again.requests == ()


def test_a_late_close_of_an_earlier_remediation_does_not_uncount_a_newer_one() -> None:
    state = registered(20)
    first = safety.handle(state, request(K.PROPOSE, "i1"), policy(), NOW).safety
    closed = safety.handle(first, request(K.CLOSE, "i1"), policy(), NOW).safety
    newer = AdmissionRequest(
        kind=K.PROPOSE, cluster_id="c1", instance_id="i1", remediation_id="r-i1-b", at=at(40)
    )
    counted = safety.handle(closed, newer, policy(), NOW).safety
    assert counted.unhealthy == ["i1"]
    late = safety.handle(counted, request(K.CLOSE, "i1"), policy(), NOW).safety  # r-i1 again
    assert late.unhealthy == ["i1"]
    own = AdmissionRequest(
        kind=K.CLOSE, cluster_id="c1", instance_id="i1", remediation_id="r-i1-b", at=at(41)
    )
    assert safety.handle(late, own, policy(), NOW).safety.unhealthy == []
