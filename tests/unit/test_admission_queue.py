"""Queued admission (issue 13): a proposal refused for lack of room (blast radius, rate
budget) waits in its cluster's queue and opens, with its transition and a QUEUE_ADMITTED
event, as soon as there is room. Pure core plus the in-memory handlers; explicit event
times, no sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta

from remediator.domain.commands import CommandKind
from remediator.domain.models import PolicyEventKind, RemediationMode, RemediationState
from remediator.domain.policy import DEFAULT_POLICY, BlastRadius, Policy
from remediator.pipeline.messages import Route
from tests.builders import T0, event, run
from tests.harness import Harness

K = PolicyEventKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def policy(**changes: object) -> Policy:
    """Limit 3 open at once (max_open), resuming at 1; no budget unless asked."""
    radius = BlastRadius(max_open=3, max_percent=100, min_allowed=1, resume_fraction=0.5)
    return DEFAULT_POLICY.model_copy(
        update={"blast_radius": radius, "rate_budget_per_hour": 0, **changes}
    )


def fail(harness: Harness, instance: str, minute: float, test: str = "DCGM_DIAG") -> None:
    harness.signal(run(instance_id=instance, test=test, completed_at=iso(minute)), now=at(minute))


def opened(harness: Harness) -> list[str]:
    """Instances with an open remediation, in the order they opened."""
    return [t.remediation.instance_id for t in harness.transitions() if t.sequence == 1]


def close(harness: Harness, instance: str, minute: float) -> None:
    state = harness.state("c1", instance)
    assert state is not None
    assert state.open is not None
    rid = state.open.remediation.id
    harness.command(CommandKind.REJECT, instance_id=instance, remediation_id=rid, now=at(minute))


def explain_queued(harness: Harness, instance: str, minute: float) -> tuple[int, int] | None:
    reply = harness.command(CommandKind.EXPLAIN, instance_id=instance, now=at(minute))
    assert reply.explanation is not None
    queued = reply.explanation.queued
    return None if queued is None else (queued.place, queued.of)


def storm(harness: Harness, count: int, minute: float = 1) -> None:
    for n in range(count):
        fail(harness, f"i{n}", minute + n / 100)


def test_refused_proposals_wait_in_order_and_open_when_the_blast_radius_resumes() -> None:
    harness = Harness(policy())
    storm(harness, 6)  # i0-i2 open; i3 trips the limit; i3, i4, i5 wait
    assert opened(harness) == ["i0", "i1", "i2"]
    assert [explain_queued(harness, f"i{n}", 2) for n in (3, 4, 5)] == [(1, 3), (2, 3), (3, 3)]
    close(harness, "i0", 10)  # 2 open: still above the resume mark (1)
    assert opened(harness) == ["i0", "i1", "i2"]
    close(harness, "i1", 11)  # 1 open: resumes; room for two under the limit of 3
    assert opened(harness) == ["i0", "i1", "i2", "i3", "i4"]
    assert explain_queued(harness, "i5", 12) == (1, 1)
    kinds = [e.kind for e in harness.events()]
    assert kinds == [
        K.BLAST_RADIUS_TRIPPED,
        K.BLAST_RADIUS_RESUMED,
        K.QUEUE_ADMITTED,
        K.QUEUE_ADMITTED,
    ]  # the queue filling up to the limit again does not trip it again
    admitted = harness.events()[2]
    assert admitted.instance_id == "i3"
    assert "waited since" in admitted.reason
    record = harness.state("c1", "i3").open.remediation  # type: ignore[union-attr]
    assert record.state is RemediationState.PENDING_APPROVAL
    assert record.create_time == at(11)  # stamped when it opened, by the input that freed room
    assert record.active_health_check_run_id is not None  # the evidence travelled with it
    close(harness, "i2", 13)
    assert opened(harness)[-1] == "i5"
    assert harness.state("c1", "i5").waiting is None  # type: ignore[union-attr]


def test_a_new_proposal_waits_behind_the_queue_even_when_there_is_room() -> None:
    roomy = BlastRadius(max_open=10, max_percent=100)
    harness = Harness(policy(rate_budget_per_hour=2, blast_radius=roomy))
    storm(harness, 3)  # budget 2: i2 waits
    assert opened(harness) == ["i0", "i1"]
    # An hour later the budget has room again; the signal that moves the clock comes
    # from another instance, which must not jump the queue.
    fail(harness, "i9", 62)
    assert opened(harness) == ["i0", "i1", "i2", "i9"]
    assert [e.kind for e in harness.events()].count(K.QUEUE_ADMITTED) == 2


def test_the_newest_signal_replaces_the_proposal_and_keeps_its_place() -> None:
    harness = Harness(policy())
    storm(harness, 5)  # i3, i4 wait
    harness.signal(
        event(
            instance_id="i3",
            alert_name="DmesgXidError",
            annotations={"xid": "79"},
            observed_at=iso(5),
        ),
        now=at(5),
    )
    waiting = harness.state("c1", "i3").waiting  # type: ignore[union-attr]
    assert waiting is not None
    assert waiting.since == at(1.03)
    assert waiting.remediation.mode is RemediationMode.HOST_AWARE  # the newer, worse signal
    assert explain_queued(harness, "i3", 6) == (1, 2)


def test_the_queue_is_bounded() -> None:
    harness = Harness(policy(admission_queue_max=2))
    storm(harness, 6)  # 3 open, 2 wait, the sixth is dropped as before the queue
    assert [explain_queued(harness, f"i{n}", 2) for n in (3, 4, 5)] == [(1, 2), (2, 2), None]
    reply = harness.command(CommandKind.EXPLAIN, instance_id="i5", now=at(2))
    assert "not queued: 2 proposal(s) already wait" in reply.explanation.decisions[0].reason  # type: ignore[union-attr]


def test_a_proposal_is_dropped_when_its_problem_clears() -> None:
    harness = Harness(policy())
    storm(harness, 5)
    harness.signal(
        run(instance_id="i3", result="PASSED", completed_at=iso(30)), now=at(30)
    )  # the test that failed passes: nothing to repair any more
    assert harness.state("c1", "i3").waiting is None  # type: ignore[union-attr]
    reply = harness.command(CommandKind.EXPLAIN, instance_id="i3", now=at(31))
    assert reply.explanation is not None
    assert reply.explanation.decisions[0].outcome == "UNQUEUED"
    close(harness, "i0", 40)
    close(harness, "i1", 41)
    assert opened(harness)[3:] == ["i4"]  # i3 no longer waits


def test_opting_out_or_a_remediation_by_hand_takes_it_out_of_the_queue() -> None:
    harness = Harness(policy())
    storm(harness, 6)
    harness.command(CommandKind.OPT_OUT, instance_id="i3", reason="RMA", now=at(3))
    harness.command(
        CommandKind.CREATE,
        instance_id="i4",
        mode=RemediationMode.REBOOT_VM,
        reason="by hand",
        now=at(3),
    )
    assert harness.state("c1", "i3").waiting is None  # type: ignore[union-attr]
    assert harness.state("c1", "i4").waiting is None  # type: ignore[union-attr]
    assert explain_queued(harness, "i5", 4) == (1, 1)


def test_a_paused_cluster_keeps_its_queue_until_resumed() -> None:
    harness = Harness(policy())
    storm(harness, 4)
    harness.command(
        CommandKind.PAUSE, instance_id="-", route=Route.CLUSTER, reason="maint", now=at(5)
    )
    close(harness, "i0", 6)
    close(harness, "i1", 7)
    assert opened(harness) == ["i0", "i1", "i2"]
    harness.command(CommandKind.RESUME, instance_id="-", route=Route.CLUSTER, now=at(8))
    assert opened(harness) == ["i0", "i1", "i2", "i3"]


def test_the_queue_and_its_admissions_are_the_same_when_replayed() -> None:
    """Replay-safe: the same inputs decide the same (the admission's ids derive from the
    proposal, its time from the input that made room), as after a crash or a takeover."""
    signals = [run(instance_id=f"i{n}", completed_at=iso(1 + n / 100)) for n in range(5)]
    outcomes = []
    for _ in range(2):
        harness = Harness(policy())
        for signal in signals:
            harness.signal(signal, now=signal.completed_at)
        close(harness, "i0", 10)
        close(harness, "i1", 11)
        events = [(e.event_id, e.reason, e.occurred_at) for e in harness.events()]
        transitions = [t.model_dump(exclude={"actor"}) for t in harness.transitions()]
        outcomes.append((events, [t for t in transitions if t["sequence"] == 1]))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][1]) == 5


def test_without_a_queue_refusals_are_dropped() -> None:
    harness = Harness(policy(admission_queue_max=0))
    storm(harness, 5)
    close(harness, "i0", 10)
    close(harness, "i1", 11)
    assert opened(harness) == ["i0", "i1", "i2"]
    assert harness.state("c1", "i3").waiting is None  # type: ignore[union-attr]
