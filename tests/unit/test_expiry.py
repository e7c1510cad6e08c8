"""Approval expiry (issue 13): a recommendation not approved within its TTL is cancelled,
on the cluster's event time, with a transition and a policy event, once."""

from __future__ import annotations

from datetime import timedelta

from remediator.domain.models import PolicyEventKind, RemediationState
from remediator.domain.policy import parse_layered
from tests.builders import T0, run
from tests.harness import Harness


def hours(h: float) -> str:
    return (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z")


def tick(harness: Harness, h: float) -> None:
    """The cluster's clock moves: a passing run of another instance at T0 + h hours."""
    harness.signal(
        run(instance_id="other", result="PASSED", completed_at=hours(h)),
        now=T0 + timedelta(hours=h),
    )


def opened(harness: Harness) -> str:
    harness.signal(run(instance_id="sick", completed_at=hours(0)), now=T0)
    state = harness.state("c1", "sick")
    assert state is not None
    assert state.open is not None
    assert state.open.remediation.state is RemediationState.PENDING_APPROVAL
    return state.open.remediation.id


def test_a_recommendation_waiting_past_its_ttl_is_cancelled_once() -> None:
    harness = Harness(parse_layered(""))  # the defaults: 24 h
    rid = opened(harness)
    tick(harness, 23.5)
    assert harness.state("c1", "sick").open is not None  # type: ignore[union-attr]

    tick(harness, 24.5)
    tick(harness, 25)  # and again: nothing more happens
    state = harness.state("c1", "sick")
    assert state is not None
    assert state.open is None
    expired = [t for t in harness.transitions() if t.remediation_id == rid][-1]
    assert (expired.from_state, expired.to_state) == (
        RemediationState.PENDING_APPROVAL,
        RemediationState.CANCELLED,
    )
    assert expired.reason == "approval expired: not approved within 24 h"
    assert expired.occurred_at == T0 + timedelta(hours=24)  # from the data, not the clock
    events = [e for e in harness.events() if e.kind is PolicyEventKind.APPROVAL_EXPIRED]
    assert len(events) == 1
    assert rid in events[0].reason
    assert [t.remediation_id for t in harness.transitions()].count(rid) == 2  # open, expire


def test_a_rule_sets_its_own_ttl_and_zero_means_never() -> None:
    harness = Harness(
        parse_layered(
            '[[rules]]\nname = "host-hardware-tests"\ntests = ["DCGM_DIAG"]\n'
            'mode = "HOST_AWARE"\napproval_ttl_hours = 2\n'
        )
    )
    opened(harness)
    tick(harness, 2.5)
    assert harness.state("c1", "sick").open is None  # type: ignore[union-attr]

    never = Harness(parse_layered("approval_ttl_hours = 0\n"))
    opened(never)
    tick(never, 24 * 30)
    assert never.state("c1", "sick").open is not None  # type: ignore[union-attr]


def test_the_ttl_counts_from_the_opening_signals_event_time_not_the_record_time() -> None:
    """A backlog: signals two days old arrive now (the inputs' record time is now). The
    recommendation expires on the signals' own clock, as it would have live."""
    harness = Harness(parse_layered(""))
    late = T0 + timedelta(days=2)  # the record time of every input below
    harness.signal(run(instance_id="sick", completed_at=hours(0)), now=late)
    harness.signal(run(instance_id="other", result="PASSED", completed_at=hours(25)), now=late)
    state = harness.state("c1", "sick")
    assert state is not None
    assert state.open is None
    (event,) = [e for e in harness.events() if e.kind is PolicyEventKind.APPROVAL_EXPIRED]
    assert event.occurred_at == T0 + timedelta(hours=24)
