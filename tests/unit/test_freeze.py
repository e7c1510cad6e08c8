"""Change freezes: the policy's [[freeze]] entries, their windows (absolute, cron in a
time zone), and what they hold back on the cluster's event time. Pure core plus the
in-memory handlers; explicit event times, no sleeps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.domain.commands import CommandKind
from remediator.domain.freeze import Freeze
from remediator.domain.models import (
    EXECUTING_STATES,
    PolicyEventKind,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.policy import (
    DEFAULT_POLICY,
    BlastRadius,
    FailureDomains,
    Policy,
    PolicyError,
    parse_layered,
)
from tests.builders import T0, run
from tests.harness import Harness

K = PolicyEventKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def window(start: float, end: float, **fields: Any) -> Freeze:
    """A freeze from minute ``start`` to ``end`` after T0."""
    return Freeze.model_validate(
        {"name": "f1", "start": at(start), "end": at(end), "reason": "launch", **fields}
    )


def policy(*freezes: Freeze, **changes: Any) -> Policy:
    """Limit 3 open at once, no budget; the given freezes."""
    radius = BlastRadius(max_open=3, max_percent=100, min_allowed=1, resume_fraction=0.5)
    return DEFAULT_POLICY.model_copy(
        update={
            "blast_radius": radius,
            "rate_budget_per_hour": 0,
            "freeze": list(freezes),
            **changes,
        }
    )


def fail(harness: Harness, instance: str, minute: float, **fields: Any) -> None:
    harness.signal(run(instance_id=instance, completed_at=iso(minute), **fields), now=at(minute))


def tick(harness: Harness, minute: float, instance: str = "healthy") -> None:
    """A passing run: the cluster's clock moves to ``minute``."""
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tick/{instance}/{minute}"))
    signal = run(instance_id=instance, result="PASSED", completed_at=iso(minute), run_id=run_id)
    harness.signal(signal, now=at(minute))


def opened(harness: Harness) -> list[str]:
    return [t.remediation.instance_id for t in harness.transitions() if t.sequence == 1]


def freeze_events(harness: Harness) -> list[tuple[K, str | None]]:
    return [(e.kind, e.freeze) for e in harness.events() if e.freeze is not None]


# -- the policy ----------------------------------------------------------------------


def test_a_policy_file_takes_absolute_and_recurring_freezes() -> None:
    loaded = parse_layered(
        """
        [[freeze]]
        name = "year-end"
        clusters = ["gpu-a"]
        start = 2026-12-24T00:00:00Z
        end = "2026-12-27T00:00:00+01:00"
        reason = "year-end launch"

        [[freeze]]
        name = "weekends"
        domains = ["rack=r12"]
        cron = "0 18 * * FRI"
        duration_hours = 62
        timezone = "Europe/Berlin"
        reason = "nobody on call for racks"
        allow_running = true
        """
    )
    year_end, weekends = loaded.freeze
    assert year_end.clusters == ["gpu-a"]
    assert weekends.clusters == ["*"]
    assert weekends.domains == ["rack=r12"]
    assert weekends.allow_running


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("start = 2026-12-24T00:00:00Z\nend = 2026-12-23T00:00:00Z", "start before end"),
        ("start = 2026-12-24T00:00:00Z", "start and end are both needed"),
        ('start = "2026-12-24T00:00:00"\nend = "2026-12-25T00:00:00"', "timezone"),
        ('cron = "0 18 * * FRI"', "needs both cron and duration_hours"),
        ('cron = "0 18 * *"\nduration_hours = 2', "5-field cron"),
        ('cron = "0 25 * * *"\nduration_hours = 2', "5-field cron"),
        ('cron = "0 18 * * FRI"\nduration_hours = 2\ntimezone = "Mars/Olympus"', "time zone"),
        ('cron = "0 18 * * FRI"\nduration_hours = 2\nstart = 2026-12-24T00:00:00Z', "either"),
        ("", "either start and end, or cron"),
        ('cron = "0 18 * * FRI"\nduration_hours = 2\nuntil = 3', "until"),
    ],
)
def test_a_bad_freeze_stops_the_policy_with_its_reason(entry: str, problem: str) -> None:
    text = f'[[freeze]]\nname = "f"\nreason = "r"\n{entry}\n'
    with pytest.raises(PolicyError, match=problem):
        parse_layered(text)


def test_freeze_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="freeze names must be unique"):
        Policy.model_validate({"freeze": [window(0, 1).model_dump()] * 2})


# -- windows -------------------------------------------------------------------------


def test_a_recurring_window_follows_its_time_zone_across_daylight_saving() -> None:
    weekly = Freeze(
        name="w",
        cron="0 22 * * SAT",
        duration_hours=4,
        timezone="Europe/Berlin",
        reason="r",
    )
    # 22:00 in Berlin is 21:00 UTC in winter, 20:00 UTC in summer (from 29 March 2026;
    # croniter 5.0.1's own zone arithmetic said 19:00 on 4 April).
    windows = weekly.windows(datetime(2026, 3, 20, tzinfo=UTC), 3)
    assert [w[0].hour for w in windows] == [21, 21, 20]
    assert all(end - start == timedelta(hours=4) for start, end in windows)
    assert weekly.window_at(datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == windows[1]
    assert weekly.window_at(datetime(2026, 3, 21, 21, 0, tzinfo=UTC)) == windows[0]
    assert weekly.window_at(datetime(2026, 3, 22, 1, 0, tzinfo=UTC)) is None  # end: exclusive
    assert weekly.window_at(datetime(2026, 3, 21, 20, 59, tzinfo=UTC)) is None


def test_overlapping_recurrences_join_into_one_window() -> None:
    twice = Freeze(name="h", cron="0 8,12 * * *", duration_hours=6, reason="r")
    day = datetime(2026, 12, 6, tzinfo=UTC)
    joined = (day + timedelta(hours=8), day + timedelta(hours=18))
    assert twice.window_at(day + timedelta(hours=13)) == joined
    assert twice.window_at(day + timedelta(hours=17, minutes=59)) == joined
    assert twice.window_at(day + timedelta(hours=18)) is None
    assert twice.windows(day, 2)[1] == (
        joined[0] + timedelta(days=1),
        joined[1] + timedelta(days=1),
    )


def test_the_calendar_answers_per_cluster_and_domain() -> None:
    rack = window(10, 20, name="rack", clusters=["c1"], domains=["rack=r1"])
    everywhere = window(30, 40, name="all", allow_running=True)
    calendar = policy(rack, everywhere).freezes
    assert calendar.first("c1", at(15), ("rack=r1",)) is not None
    assert calendar.first("c1", at(15), ("rack=r2",)) is None
    assert calendar.first("c1", at(15), None) is None  # the whole cluster: not frozen
    assert calendar.first("c2", at(15), ("rack=r1",)) is None
    assert calendar.first("c2", at(35), None) is not None
    assert calendar.first("c2", at(35), None, starting=True) is None  # allow_running
    assert calendar.first("c1", at(20), ("rack=r1",)) is None  # end: exclusive


# -- what a freeze holds back ----------------------------------------------------------


def test_a_storm_during_a_freeze_waits_in_the_queue_and_opens_when_it_ends() -> None:
    harness = Harness(policy(window(10, 20)))
    tick(harness, 5)
    for n in range(5):
        fail(harness, f"i{n}", 11 + n / 10)
    assert opened(harness) == []
    assert freeze_events(harness) == [(K.FREEZE_STARTED, "f1")]
    reply = harness.command(CommandKind.EXPLAIN, instance_id="i0", now=at(12))
    assert reply.explanation is not None
    assert reply.explanation.queued is not None
    assert reply.explanation.queued.blocked == "freeze"
    assert "change freeze f1 until" in reply.explanation.queued.reason
    tick(harness, 19.9)
    assert opened(harness) == []
    tick(harness, 20)  # the first input at the end: the queue opens within the limit (3)
    assert opened(harness) == ["i0", "i1", "i2"]
    assert freeze_events(harness) == [(K.FREEZE_STARTED, "f1"), (K.FREEZE_ENDED, "f1")]
    kinds = [e.kind for e in harness.events() if e.freeze is None]
    assert kinds.count(K.QUEUE_ADMITTED) == 3


def test_a_failure_domain_freeze_holds_only_its_domain() -> None:
    radius = BlastRadius(max_open=10, max_percent=100, domains=FailureDomains(keys=["rack"]))
    frozen = window(0, 60, domains=["rack=r1"])
    harness = Harness(policy(frozen, blast_radius=radius))
    fail(harness, "a1", 1, labels={"rack": "r1"})
    fail(harness, "b1", 2, labels={"rack": "r2"})
    fail(harness, "c1", 3)  # in no domain
    assert opened(harness) == ["b1", "c1"]
    tick(harness, 60)
    assert opened(harness) == ["b1", "c1", "a1"]


def approve(harness: Harness, instance: str, minute: float) -> None:
    state = harness.state("c1", instance)
    assert state is not None
    assert state.open is not None
    rid = state.open.remediation.id
    reply = harness.command(
        CommandKind.APPROVE, instance_id=instance, remediation_id=rid, now=at(minute)
    )
    assert reply.error_code is None, reply.error_message


def state_of(harness: Harness, instance: str) -> RemediationState | None:
    state = harness.state("c1", instance)
    return None if state is None or state.open is None else state.open.remediation.state


@pytest.mark.parametrize("allow_running", [False, True])
def test_an_approved_remediation_waits_for_the_freeze_unless_it_allows_running(
    allow_running: bool,
) -> None:
    harness = Harness(policy(window(10, 20, allow_running=allow_running)))
    fail(harness, "i1", 1)
    tick(harness, 12)
    approve(harness, "i1", 13)
    assert (state_of(harness, "i1") in EXECUTING_STATES) is allow_running
    assert (state_of(harness, "i1") is RemediationState.PENDING) is not allow_running
    tick(harness, 20)
    assert state_of(harness, "i1") in EXECUTING_STATES


def create(harness: Harness, minute: float, **fields: Any) -> str | None:
    reply = harness.command(
        CommandKind.CREATE,
        instance_id="m1",
        now=at(minute),
        mode="REMEDIATION_MODE_VM_ONLY",
        **fields,
    )
    return reply.error_message if reply.error_code is not None else None


def test_during_a_freeze_only_an_admin_creates_by_hand_and_must_say_why() -> None:
    harness = Harness(policy(window(10, 20)))
    tick(harness, 12)
    refused = create(harness, 13, role="operator", reason="fix it")
    assert refused is not None
    assert "change freeze f1" in refused
    assert "only an admin" in refused
    assert create(harness, 13, role="admin") is not None  # no reason
    assert create(harness, 13, role="admin", reason="customer escalation") is None
    state = harness.state("c1", "m1")
    assert state is not None
    assert state.open is not None
    assert state.open.remediation.trigger is RemediationTrigger.MANUAL
    assert state.open.remediation.state in EXECUTING_STATES  # an operator's call: started
    assert create(harness, 25, role="operator", reason="after") is not None  # open already


def test_a_freeze_decides_the_same_when_replayed() -> None:
    def history() -> Harness:
        harness = Harness(policy(window(10, 20)))
        tick(harness, 5)
        for n in range(4):
            fail(harness, f"i{n}", 11 + n, run_id=str(uuid.UUID(int=n + 1)))
        tick(harness, 21)
        return harness

    first, again = history(), history()
    assert [e.event_id for e in first.events()] == [e.event_id for e in again.events()]
    assert [t.remediation_id for t in first.transitions()] == [
        t.remediation_id for t in again.transitions()
    ]
