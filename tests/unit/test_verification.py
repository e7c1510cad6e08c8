"""Post-repair verification (issue 13): after a remediation SUCCEEDS the instance must show
health within ``verify_within_minutes``, else a VERIFICATION_FAILED event, a note on the
remediation's record, and the next failing signal escalates at once. Every time here is
explicit: signals carry their event times, handlers their input times."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from remediator.domain import verification
from remediator.domain.commands import CommandKind
from remediator.domain.correlate import Outcome, decide
from remediator.domain.execution import ReportKind, StepReport
from remediator.domain.models import (
    PolicyEvent,
    PolicyEventKind,
    RemediationMode,
    RemediationState,
    Verification,
    VerificationState,
)
from remediator.domain.policy import parse_layered
from remediator.domain.safety import ClusterRecord
from remediator.domain.state import InstanceState
from remediator.pipeline.messages import Route
from tests.builders import T0, event, run
from tests.harness import Harness

M = RemediationMode
V = VerificationState
K = PolicyEventKind

#: Approved at once in c1, so the remediation starts and can be reported done.
AUTO = '[clusters.c1]\nauto_approve = ["*"]\n'


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def harness(extra: str = "") -> Harness:
    return Harness(parse_layered(extra + AUTO))


def alert(minutes: float, status: str = "FIRING", **fields: Any) -> Any:
    """NpdKernelDeadlock (rule reboot-faults: REBOOT_VM) on i1 at T0 + minutes."""
    fields.setdefault("alert_name", "NpdKernelDeadlock")
    return event(status=status, observed_at=iso(minutes), annotations=None, **fields)


def send(h: Harness, signal: Any, minutes: float) -> None:
    h.signal(signal, now=at(minutes))


def repaired(h: Harness, opened: float = 0, done: float = 5, instance: str = "i1") -> str:
    """A failing alert at ``opened`` opens a REBOOT_VM (approved, started at once); its
    step is reported done at ``done``: SUCCEEDED. Returns the remediation's id."""
    send(h, alert(opened, instance_id=instance), opened)
    return succeed(h, done, instance)


def succeed(h: Harness, done: float, instance: str = "i1") -> str:
    state = h.state("c1", instance)
    assert state is not None
    assert state.open is not None, "nothing open"
    rid = state.open.remediation.id
    for step in range(len(state.open.remediation.operations)):
        for kind in (ReportKind.STARTED, ReportKind.DONE):
            current = h.state("c1", instance)
            assert current is not None
            assert current.open is not None
            operation = current.open.remediation.operations[step]
            h.report(
                StepReport(
                    remediation_id=rid,
                    cluster_id="c1",
                    instance_id=instance,
                    step=step,
                    operation_id=operation.operation_id,
                    kind=kind,
                    observed_at=at(done),
                ),
                now=at(done),
            )
    final = h.state("c1", instance)
    assert final is not None
    assert final.open is None
    assert final.past[0].state is RemediationState.SUCCEEDED
    return rid


def tick(h: Harness, minutes: float) -> None:
    """The cluster's clock moves: a passing run of another instance."""
    send(h, run(instance_id="other", result="PASSED", completed_at=iso(minutes)), minutes)


def note(h: Harness, instance: str = "i1") -> Verification:
    state = h.state("c1", instance)
    assert state is not None
    assert state.verification is not None
    return state.verification


def failures(h: Harness) -> list[PolicyEvent]:
    return [e for e in h.events() if e.kind is K.VERIFICATION_FAILED]


def explained(h: Harness, instance: str = "i1") -> dict[str, Any]:
    reply = h.command(CommandKind.EXPLAIN, instance_id=instance, now=at(0))
    assert reply.explanation is not None
    return reply.explanation.model_dump(mode="json")


# -- the window ----------------------------------------------------------------------


def test_a_success_opens_a_window_from_the_success_on_event_time() -> None:
    h = harness()  # the default: 30 min
    rid = repaired(h, opened=0, done=5)
    pending = note(h)
    assert (pending.remediation_id, pending.state, pending.mode) == (rid, V.PENDING, M.REBOOT_VM)
    assert (pending.since, pending.deadline) == (at(5), at(35))
    assert pending.alerts == ["NpdKernelDeadlock"]
    assert h.state().past[0].verification is V.PENDING  # type: ignore[union-attr]
    assert explained(h)["verification"]["state"] == "PENDING"
    assert explained(h)["verification"]["deadline"] == iso(35)


def test_a_passing_run_within_the_window_verifies_it_and_publishes_nothing() -> None:
    h = harness()
    repaired(h)
    passing = run(result="PASSED", test="NCCL_SINGLE_NODE", completed_at=iso(12))
    send(h, passing, 12)
    verified = note(h)
    assert (verified.state, verified.at, verified.by) == (
        V.VERIFIED,
        at(12),
        f"run:{passing.run_id}",
    )
    assert h.state().past[0].verification is V.VERIFIED  # type: ignore[union-attr]
    tick(h, 60)  # long past the deadline: nothing more happens
    assert note(h).state is V.VERIFIED
    assert failures(h) == []
    shown = explained(h)["verification"]
    assert (shown["state"], shown["by"]) == ("VERIFIED", f"run:{passing.run_id}")


def test_the_opening_alert_resolved_verifies_it_another_alert_does_not() -> None:
    h = harness()
    repaired(h)
    send(h, alert(8, "RESOLVED", alert_name="KubeNodeDiskPressure"), 8)
    assert note(h).state is V.PENDING
    resolved = alert(9, "RESOLVED")
    send(h, resolved, 9)
    assert (note(h).state, note(h).by) == (V.VERIFIED, f"event:{resolved.event_id}")


def test_health_older_than_the_success_or_a_skipped_run_does_not_count() -> None:
    h = harness()
    repaired(h, done=5)
    send(h, run(result="PASSED", completed_at=iso(4)), 6)  # ran before the repair ended
    send(h, run(result="SKIPPED", completed_at=iso(7)), 7)
    assert note(h).state is V.PENDING


def test_a_failing_signal_inside_the_window_does_not_fail_it() -> None:
    """A node back from a reboot may alert once before it settles: only the deadline fails
    a verification. The cooldown holds the signal, a passing run still verifies."""
    h = harness()
    repaired(h, done=5)
    send(h, alert(10), 10)
    assert h.state().open is None  # type: ignore[union-attr]
    assert "cooldown" in explained(h)["decisions"][0]["reason"]
    assert note(h).state is V.PENDING
    send(h, run(result="PASSED", completed_at=iso(15)), 15)
    assert note(h).state is V.VERIFIED
    assert failures(h) == []


# -- failing ---------------------------------------------------------------------------


def test_no_health_by_the_deadline_fails_it_once_on_the_clusters_event_time() -> None:
    h = harness()
    rid = repaired(h, done=5)
    tick(h, 34.9)
    assert note(h).state is V.PENDING
    tick(h, 36)  # another instance's signal moves the cluster's clock past the deadline
    tick(h, 50)
    failed = note(h)
    assert (failed.state, failed.at, failed.by) == (V.FAILED, at(35), None)
    assert h.state().past[0].verification is V.FAILED  # type: ignore[union-attr]
    (event_,) = failures(h)
    assert (event_.cluster_id, event_.instance_id, event_.mode) == ("c1", "i1", M.REBOOT_VM)
    assert event_.rule == "reboot-faults"
    assert event_.occurred_at == at(35)  # the deadline, not the clock that noticed it
    assert rid in event_.reason
    assert "no resolution of NpdKernelDeadlock" in event_.reason
    shown = explained(h)["verification"]
    assert (shown["state"], shown["at"]) == ("FAILED", iso(35))


def test_the_next_failing_signal_escalates_at_once_past_debounce_and_cooldown() -> None:
    rule = '[[rules]]\nname = "reboot-faults"\nalerts = ["NpdKernelDeadlock"]\n'
    slow = f'cooldown_minutes = 120\n{rule}mode = "REBOOT_VM"\ndebounce_count = 3\n'
    h = harness(slow)
    send(h, alert(0), 0)
    send(h, alert(1), 1)
    send(h, alert(2), 2)  # the third within 10 min opens it
    rid = succeed(h, 5)
    tick(h, 36)
    assert note(h).state is V.FAILED

    send(h, alert(40), 40)  # inside the cooldown (120 min), first of a debounce of 3
    state = h.state()
    assert state is not None
    assert state.open is not None
    escalated = state.open.remediation
    assert escalated.mode is M.VM_ONLY  # the next step up from REBOOT_VM
    decision = explained(h)["decisions"][0]
    assert decision["outcome"] == "OPENED"
    assert f"{rid} (REBOOT_VM) SUCCEEDED but the instance showed no health" in decision["reason"]
    assert "escalated at once" in decision["reason"]
    assert verification.armed(state) is None  # used up: a remediation is open again


def test_without_a_failed_verification_the_same_signal_waits_for_the_cooldown() -> None:
    h = harness("verify_within_minutes = 0\ncooldown_minutes = 120\n")
    repaired(h, done=5)
    assert h.state().verification is None  # type: ignore[union-attr]
    send(h, alert(40), 40)
    assert h.state().open is None  # type: ignore[union-attr]
    assert explained(h)["decisions"][0]["outcome"] == "BLOCKED"


def test_a_failing_signal_past_the_deadline_fails_it_first_then_escalates() -> None:
    """No other signal moved the clock: the instance's own signal passes the deadline, the
    verification fails before the signal is decided, and that signal escalates."""
    h = harness("cooldown_minutes = 120\n")
    repaired(h, done=5)
    send(h, alert(40), 40)
    assert [e.kind for e in failures(h)] == [K.VERIFICATION_FAILED]
    state = h.state()
    assert state is not None
    assert state.open is not None
    assert state.open.remediation.mode is M.VM_ONLY
    assert note(h).state is V.FAILED


def test_the_other_safety_rules_still_hold_the_escalation() -> None:
    h = harness("cooldown_minutes = 120\n")  # only the escalation at once opens before it ends
    repaired(h, done=5, instance="i1")
    repaired(h, done=5, instance="i2")
    tick(h, 36)
    assert [e.instance_id for e in failures(h)] == ["i1", "i2"]

    h.command(CommandKind.OPT_OUT, instance_id="i1", reason="customer debugging", now=at(37))
    send(h, alert(40, instance_id="i1"), 40)
    assert h.state("c1", "i1").open is None  # type: ignore[union-attr]
    assert "opted out" in explained(h, "i1")["decisions"][0]["reason"]

    h.command(CommandKind.PAUSE, instance_id="-", route=Route.CLUSTER, reason="rack", now=at(38))
    send(h, alert(41, instance_id="i2"), 41)
    assert h.state("c1", "i2").open is None  # type: ignore[union-attr]
    assert "cluster paused" in explained(h, "i2")["decisions"][0]["reason"]
    # Still armed: once the pause is lifted the next failing signal escalates.
    h.command(CommandKind.RESUME, instance_id="-", route=Route.CLUSTER, now=at(42))
    send(h, alert(43, instance_id="i2"), 43)
    reopened = h.state("c1", "i2")
    assert reopened is not None
    assert reopened.open is not None
    assert reopened.open.remediation.mode is M.VM_ONLY


def test_health_after_the_failure_disarms_the_escalation() -> None:
    rule = '[[rules]]\nname = "reboot-faults"\nalerts = ["NpdKernelDeadlock"]\n'
    h = harness(f'{rule}mode = "REBOOT_VM"\ndebounce_count = 2\n')
    send(h, alert(0), 0)
    send(h, alert(1), 1)
    succeed(h, 5)
    tick(h, 36)
    passing = run(result="PASSED", completed_at=iso(50))
    send(h, passing, 50)
    recovered = note(h)
    assert (recovered.state, recovered.recovered_by) == (V.FAILED, f"run:{passing.run_id}")
    assert recovered.recovered_at == at(50)
    assert verification.armed(h.state()) is None  # type: ignore[arg-type]
    send(h, alert(60), 60)  # the ordinary rules again: the first of a debounce of 2
    assert explained(h)["decisions"][0]["outcome"] == "DEBOUNCED"


# -- settings --------------------------------------------------------------------------


def test_zero_turns_it_off_and_a_rule_sets_its_own_window() -> None:
    off = harness("verify_within_minutes = 0\n")
    repaired(off)
    assert off.state().verification is None  # type: ignore[union-attr]

    rule = '[[rules]]\nname = "reboot-faults"\nalerts = ["NpdKernelDeadlock"]\n'
    own = harness(f'{rule}mode = "REBOOT_VM"\nverify_within_minutes = 10\n')
    repaired(own, done=5)
    assert note(own).deadline == at(15)
    rule_off = harness(
        f'verify_within_minutes = 45\n{rule}mode = "REBOOT_VM"\nverify_within_minutes = 0\n'
    )
    repaired(rule_off)
    assert rule_off.state().verification is None  # type: ignore[union-attr]


def test_a_manual_remediation_is_verified_too_but_not_an_eviction() -> None:
    h = harness()
    for instance, mode in (("i1", M.REBOOT_VM), ("i2", M.EVICT_WITHOUT_REPLACEMENT)):
        h.command(
            CommandKind.CREATE,
            instance_id=instance,
            remediation_id=f"r-{instance}",
            mode=mode,
            now=at(0),
        )
        succeed(h, 5, instance)
    assert note(h, "i1").remediation_id == "r-i1"
    assert note(h, "i1").alerts == []  # only a passing run can show it
    assert h.state("c1", "i2").verification is None  # type: ignore[union-attr]


def test_the_window_starts_at_the_newest_event_time_when_signals_run_ahead() -> None:
    h = harness()
    send(h, alert(0), 0)
    send(h, run(result="PASSED", test="GPU_BURN", completed_at=iso(20)), 1)  # event time ahead
    succeed(h, 5)  # reported on the service's clock, behind the signals
    assert (note(h).since, note(h).deadline) == (at(20), at(50))


# -- replays and old records ----------------------------------------------------------


def test_the_failure_is_the_same_whichever_clock_notices_it_and_however_often() -> None:
    opener = alert(0)
    by_cluster, by_instance = harness(), harness()
    for h in (by_cluster, by_instance):
        send(h, opener, 0)
        succeed(h, 5)
    tick(by_cluster, 40)
    send(by_instance, run(result="FAILED", test="STORAGE_FIO", completed_at=iso(40)), 40)
    (a,), (b,) = failures(by_cluster), failures(by_instance)
    assert a == b  # id, time, reason: a consumer drops the repeat
    assert note(by_cluster) == note(by_instance)

    state = by_cluster.state()
    assert state is not None
    again = verification.due(state, at(60))
    assert again is None  # decided once
    pending = state.model_copy(
        update={
            "verification": note(by_cluster).model_copy(update={"state": V.PENDING, "at": None})
        }
    )
    first, second = verification.due(pending, at(40)), verification.due(pending, at(90))
    assert first is not None
    assert second is not None
    assert first.event == second.event == a
    assert first.state == second.state


def test_a_duplicate_signal_changes_nothing_and_a_record_without_the_field_reads() -> None:
    h = harness()
    repaired(h)
    passing = run(result="PASSED", completed_at=iso(12))
    send(h, passing, 12)
    before = h.state()
    assert before is not None
    again = decide(before, passing, at(13))
    assert again.outcome is Outcome.DUPLICATE
    assert again.state == before

    old = before.model_dump(mode="json", exclude={"verification"})
    for past in old["past"]:
        past.pop("verification", None)
    read = InstanceState.model_validate(old)
    assert read.verification is None
    assert read.past[0].verification is None


def test_the_deadline_gives_the_whole_window_on_the_clusters_clock() -> None:
    """Another instance's signals ahead of the service's clock must not fail the repair the
    moment it succeeds: the window is counted from the cluster's newest event time then,
    while health still counts from the success on the instance's own clock."""
    h = harness()
    send(h, alert(0), 0)
    tick(h, 50)  # the cluster's clock is at minute 50 when the repair succeeds at 5
    succeed(h, 5)
    assert (note(h).since, note(h).deadline) == (at(5), at(80))
    assert failures(h) == []
    send(h, run(result="PASSED", completed_at=iso(6)), 6)
    assert note(h).state is V.VERIFIED


def recovered(h: Harness) -> Harness:
    """A new owner after a crash that lost the last batch's writes: the tables as they
    are, decoded the way the state owner rebuilds its fleet."""
    copy = Harness(h.config.policy)
    for name in ("state", "archive", "decisions", "claims"):
        getattr(copy.tables, name).data = dict(getattr(h.tables, name).data)
    for key, raw in copy.tables.state.data.items():  # type: ignore[attr-defined]
        if b"/" in key:
            state = InstanceState.model_validate_json(raw)
            copy.fleet.cluster(0, state.cluster_id).put(state)
        else:
            record = ClusterRecord.model_validate_json(raw)
            copy.fleet.cluster(0, record.cluster_id).record = record
    return copy


def test_inputs_applied_again_after_a_crash_publish_the_same_records() -> None:
    h = harness("cooldown_minutes = 120\n")
    send(h, alert(0), 0)
    # The success's report, the deadline and the escalating signal, each replayed by a
    # new owner from the tables as they were before it: the same outputs, byte for byte.
    state = h.state()
    assert state is not None
    assert state.open is not None
    for step, kind in ((0, ReportKind.STARTED), (0, ReportKind.DONE)):
        current = h.state()
        assert current is not None
        assert current.open is not None
        operation = current.open.remediation.operations[step]
        report = StepReport(
            remediation_id=current.open.remediation.id,
            cluster_id="c1",
            instance_id="i1",
            step=step,
            operation_id=operation.operation_id,
            kind=kind,
            observed_at=at(5),
        )
        again = recovered(h)
        assert again.report(report, now=at(5)).outputs == h.report(report, now=at(5)).outputs
    assert note(h).state is V.PENDING
    for signal, minutes in (
        (run(instance_id="other", result="PASSED", completed_at=iso(40)), 40),
        (alert(41), 41),
    ):
        again = recovered(h)
        first = h.signal(signal, now=at(minutes))
        assert first.outputs
        assert again.signal(signal, now=at(minutes)).outputs == first.outputs
        assert again.stored() == h.stored()
    assert [e.kind for e in h.events()] == [K.VERIFICATION_FAILED]
    assert h.state().open.remediation.mode is M.VM_ONLY  # type: ignore[union-attr]
