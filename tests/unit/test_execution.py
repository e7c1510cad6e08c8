"""Carrying a remediation out: plans, starts, step reports in the pure core; the cluster's
slots through the in-memory handlers (derived from the instances' own records)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from remediator.domain import execution
from remediator.domain.commands import Command, CommandKind, handle
from remediator.domain.execution import ReportKind, StepReport, apply_report, plan, start
from remediator.domain.lifecycle import IllegalTransition
from remediator.domain.models import RemediationMode, RemediationState, StepAction, StepState
from remediator.domain.state import InstanceState
from remediator.pipeline.messages import Route
from tests.builders import T0, run
from tests.harness import Harness

S = RemediationState
M = RemediationMode
NOW = T0 + timedelta(minutes=1)


def create(mode: M = M.HOST_AWARE, rid: str = "r1", instance: str = "i1") -> InstanceState:
    command = Command(
        command_id=str(uuid.uuid4()),
        kind=CommandKind.CREATE,
        cluster_id="c1",
        instance_id=instance,
        principal="alice",
        issued_at=T0,
        remediation_id=rid,
        mode=mode,
    )
    return handle(None, command, T0).state


def report(state: InstanceState, step: int, kind: ReportKind, **fields: Any) -> StepReport:
    assert state.open is not None
    rem = state.open.remediation
    return StepReport(
        remediation_id=rem.id,
        cluster_id=rem.cluster_id,
        instance_id=rem.instance_id,
        step=step,
        operation_id=rem.operations[step].operation_id,
        kind=kind,
        observed_at=NOW,
        **fields,
    )


def running(mode: M = M.HOST_AWARE) -> InstanceState:
    return start(create(mode), NOW)[0]


@pytest.mark.parametrize(
    ("mode", "steps"),
    [
        (M.REBOOT_VM, ["REBOOT_VM"]),
        (M.VM_ONLY, ["DELETE_VM", "PROVISION_VM"]),
        (M.HOST_AWARE, ["CORDON_HOST", "DELETE_VM", "PROVISION_VM"]),
        (M.EVICT_WITHOUT_REPLACEMENT, ["DELETE_VM"]),
    ],
)
def test_each_mode_plans_exactly_its_contract_steps(mode: M, steps: list[str]) -> None:
    state = create(mode)
    assert state.open is not None
    ops = plan(state.open.remediation)
    assert [op.action.value for op in ops] == steps
    assert all(op.state is StepState.PLANNED for op in ops)
    assert len({op.operation_id for op in ops}) == len(ops)
    # Deterministic: the same remediation always plans the same ids.
    assert [op.operation_id for op in plan(state.open.remediation)] == [
        op.operation_id for op in ops
    ]


def test_operation_ids_are_bound_to_the_instance_not_only_the_remediation_id() -> None:
    """A manual remediation's id is the client's to choose, and may be another instance's
    remediation id: the two must not share an operation on the control plane (the second
    would find the first's steps "done", or wait on them)."""
    h = harness(limit=2)
    h.signal(run(cluster_id="c1", instance_id="i1"))
    theirs = h.state("c1", "i1")
    rid = _open(theirs).id  # automated, PENDING_APPROVAL
    h.command(CommandKind.APPROVE, instance_id="i1", remediation_id=rid, mode=M.REBOOT_VM)
    h.command(CommandKind.CREATE, instance_id="i2", remediation_id=rid, mode=M.REBOOT_VM)
    assert states(h, "i1", "i2") == [S.RUNNING, S.RUNNING]
    (first,) = _open(h.state("c1", "i1")).operations
    (second,) = _open(h.state("c1", "i2")).operations
    assert first.operation_id != second.operation_id
    # Deterministic: the same remediation of the same instance plans the same id.
    assert plan(_open(create(M.REBOOT_VM, rid=rid, instance="i1")))[0].operation_id == (
        first.operation_id
    )


def test_a_record_that_0_4_wrote_for_an_instance_named_dot_dot_still_loads_and_runs() -> None:
    """0.4 accepted "." and ".." as ids. Its records must still load (the state table is
    read whole at start: one that did not would stop the worker) and a remediation it
    started must still finish; only new input with such an id is refused."""
    raw = running(M.REBOOT_VM).model_dump_json().replace('"i1"', '".."')
    state = InstanceState.model_validate_json(raw)
    assert _open(state).instance_id == ".."
    for kind in (ReportKind.STARTED, ReportKind.DONE):
        state = apply_report(state, report(state, 0, kind), NOW).state
    assert state.open is None
    assert state.past[0].state is S.SUCCEEDED


def test_only_host_aware_provisioning_avoids_the_current_host() -> None:
    host_aware = plan(_open(create(M.HOST_AWARE)))
    assert [op.avoid_current_host for op in host_aware] == [False, False, True]
    assert not any(op.avoid_current_host for op in plan(_open(create(M.VM_ONLY))))


def _open(state: InstanceState) -> Any:
    assert state.open is not None
    return state.open.remediation


def test_starting_a_pending_remediation_records_its_plan() -> None:
    state, t = start(create(M.VM_ONLY), NOW)
    assert (t.from_state, t.to_state, t.event, t.sequence) == (S.PENDING, S.RUNNING, "START", 2)
    assert _open(state).start_time == NOW
    state, t = start(create(), NOW)
    # HOST_AWARE cordons the host first: it starts QUARANTINING.
    assert (t.from_state, t.to_state, t.event, t.sequence) == (
        S.PENDING,
        S.QUARANTINING,
        "QUARANTINE",
        2,
    )
    rem = _open(state)
    assert rem.start_time == NOW
    assert [op.action for op in rem.operations] == [
        StepAction.CORDON_HOST,
        StepAction.DELETE_VM,
        StepAction.PROVISION_VM,
    ]


def test_only_a_pending_remediation_starts() -> None:
    with pytest.raises(IllegalTransition):
        start(running(), NOW)
    with pytest.raises(IllegalTransition):
        start(InstanceState.empty("c1", "i1"), NOW)


def test_steps_are_recorded_started_then_done_and_the_last_one_succeeds() -> None:
    state = running(M.VM_ONLY)
    seq = 2
    for step in range(2):
        applied = apply_report(state, report(state, step, ReportKind.STARTED), NOW)
        (t,) = applied.transitions
        seq += 1
        assert (t.event, t.to_state, t.sequence) == ("STEP_STARTED", S.RUNNING, seq)
        state = applied.state
        assert _open(state).operations[step].state is StepState.RUNNING
        applied = apply_report(state, report(state, step, ReportKind.DONE), NOW)
        (t,) = applied.transitions
        seq += 1
        state = applied.state
        if step == 0:
            assert (t.event, t.to_state) == ("STEP_DONE", S.RUNNING)
    assert (t.event, t.from_state, t.to_state) == ("SUCCEED", S.RUNNING, S.SUCCEEDED)
    assert state.open is None
    done = t.remediation
    assert done.end_time == NOW
    assert [op.state for op in done.operations] == [StepState.DONE, StepState.DONE]


def test_a_failed_step_fails_the_remediation_with_its_error() -> None:
    state = running(M.HOST_AWARE)
    state = apply_report(state, report(state, 0, ReportKind.STARTED), NOW).state
    applied = apply_report(state, report(state, 0, ReportKind.FAILED, error="host busy"), NOW)
    (t,) = applied.transitions
    assert (t.event, t.to_state) == ("FAIL", S.FAILED)
    assert applied.state.open is None
    failed = t.remediation
    assert failed.error_message == "CORDON_HOST failed: host busy"
    assert failed.operations[0].state is StepState.FAILED
    assert failed.operations[0].error == "host busy"
    assert [op.state for op in failed.operations[1:]] == [StepState.PLANNED] * 2


@pytest.mark.parametrize("kind", list(ReportKind))
def test_repeated_reports_change_nothing(kind: ReportKind) -> None:
    state = running(M.VM_ONLY)
    state = apply_report(state, report(state, 0, ReportKind.STARTED), NOW).state
    first = apply_report(state, report(state, 0, kind, error="boom"), NOW)
    again = apply_report(first.state, report(state, 0, kind, error="boom"), NOW)
    assert again.transitions == ()
    assert again.state is first.state
    assert again.ignored


def test_a_report_out_of_order_or_for_another_operation_is_ignored() -> None:
    state = running(M.HOST_AWARE)
    skipping = apply_report(state, report(state, 1, ReportKind.STARTED), NOW)
    assert skipping.transitions == ()
    assert "earlier step" in skipping.ignored
    forged = report(state, 0, ReportKind.STARTED).model_copy(update={"operation_id": "other"})
    assert apply_report(state, forged, NOW).transitions == ()
    beyond = report(state, 0, ReportKind.STARTED).model_copy(update={"step": 7})
    assert apply_report(state, beyond, NOW).transitions == ()


def test_a_report_for_a_remediation_not_running_is_ignored() -> None:
    pending = create()
    state = running()
    stale = report(state, 0, ReportKind.DONE)
    assert apply_report(pending, stale, NOW).transitions == ()
    assert apply_report(None, stale, NOW).transitions == ()


def test_running_remediation_finds_only_running_ones() -> None:
    assert execution.running_remediation(create()) is None
    assert execution.running_remediation(None) is None
    rem = execution.running_remediation(running(M.REBOOT_VM))
    assert rem is not None
    assert rem.state is S.RUNNING
    quarantining = execution.running_remediation(running(M.HOST_AWARE))
    assert quarantining is not None
    assert quarantining.state is S.QUARANTINING


@pytest.mark.parametrize(
    ("mode", "states"),
    [
        (
            M.HOST_AWARE,
            ["QUARANTINING", "QUARANTINED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"],
        ),
        (
            M.HOST_POWER_CYCLE,
            ["QUARANTINING", "QUARANTINED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"],
        ),
        (M.VM_ONLY, ["RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"]),
    ],
)
def test_a_cordoning_mode_goes_through_quarantining_and_quarantined(
    mode: M, states: list[str]
) -> None:
    """PENDING -> QUARANTINING (cordon started) -> QUARANTINED (cordon done) -> RUNNING (next
    step started) -> SUCCEEDED, one transition per report, sequences contiguous."""
    state, started = start(create(mode), NOW)
    transitions = [started]
    for step in range(len(_open(state).operations)):
        for kind in (ReportKind.STARTED, ReportKind.DONE):
            applied = apply_report(state, report(state, step, kind), NOW)
            (t,) = applied.transitions
            transitions.append(t)
            state = applied.state
    # After the start: one transition per report.
    assert [t.to_state.value for t in transitions[1:]] == states
    assert [t.sequence for t in transitions] == list(range(2, 2 + len(transitions)))
    assert transitions[0].to_state in (S.QUARANTINING, S.RUNNING)


def test_host_power_cycle_plans_cordon_power_cycle_uncordon() -> None:
    assert [op.action for op in plan(_open(create(M.HOST_POWER_CYCLE)))] == [
        StepAction.CORDON_HOST,
        StepAction.POWER_CYCLE_HOST,
        StepAction.UNCORDON_HOST,
    ]


@pytest.mark.parametrize("at_step", [0, 1])
def test_a_failed_step_while_quarantined_fails_it(at_step: int) -> None:
    state = running(M.HOST_POWER_CYCLE)
    for step in range(at_step):
        for kind in (ReportKind.STARTED, ReportKind.DONE):
            state = apply_report(state, report(state, step, kind), NOW).state
    expected_from = S.QUARANTINING if at_step == 0 else S.QUARANTINED
    assert _open(state).state is expected_from
    failed = apply_report(state, report(state, at_step, ReportKind.FAILED, error="BMC down"), NOW)
    (t,) = failed.transitions
    assert (t.from_state, t.to_state) == (expected_from, S.FAILED)


def test_quarantined_remediations_hold_a_slot() -> None:
    h = harness(limit=1)
    h.command(CommandKind.CREATE, instance_id="a", remediation_id="r-a", mode=M.HOST_POWER_CYCLE)
    manual(h, "b", minute=1)
    assert states(h, "a", "b") == [S.QUARANTINING, S.PENDING]
    refused = h.command(CommandKind.CANCEL, instance_id="a", remediation_id="r-a")
    assert refused.error_code is not None


# -- the cluster's slots -----------------------------------------------------------------


def harness(limit: int) -> Harness:
    return Harness(max_running=limit)


def manual(h: Harness, instance: str, minute: float = 0) -> str:
    """An operator's remediation (PENDING at once), created at ``minute``."""
    rid = f"r-{instance}"
    h.command(
        CommandKind.CREATE,
        instance_id=instance,
        remediation_id=rid,
        mode=M.REBOOT_VM,
        now=T0 + timedelta(minutes=minute),
    )
    return rid


def states(h: Harness, *instances: str) -> list[S | None]:
    found = []
    for instance in instances:
        state = h.state("c1", instance)
        found.append(None if state is None or state.open is None else state.open.remediation.state)
    return found


def finish(h: Harness, instance: str, minute: float = 5) -> None:
    """Report every step of the instance's RUNNING remediation done."""
    state = h.state("c1", instance)
    assert state is not None
    assert state.open is not None
    for step, _ in enumerate(state.open.remediation.operations):
        for kind in (ReportKind.STARTED, ReportKind.DONE):
            current = h.state("c1", instance)
            assert current is not None
            h.report(report(current, step, kind), now=T0 + timedelta(minutes=minute))


def test_at_most_limit_run_and_the_rest_wait_first_come_first_served() -> None:
    h = harness(limit=2)
    for n, instance in enumerate(("a", "b", "c", "d")):
        manual(h, instance, minute=n)
    assert states(h, "a", "b", "c", "d") == [S.RUNNING, S.RUNNING, S.PENDING, S.PENDING]
    finish(h, "b")
    assert states(h, "c", "d") == [S.RUNNING, S.PENDING]
    view = h.command(CommandKind.SAFETY, instance_id="-", route=Route.CLUSTER).safety
    assert view is not None
    assert (view.running, view.queued) == (["a", "c"], ["d"])


def test_the_next_one_starts_with_the_time_of_what_freed_its_slot() -> None:
    """Deterministic: a replay of the same input starts it with the same content."""
    h = harness(limit=1)
    manual(h, "a", minute=0)
    manual(h, "b", minute=1)
    finish(h, "a", minute=7)
    started = [t for t in h.transitions() if t.event == "START" and t.remediation_id == "r-b"]
    assert [t.occurred_at for t in started] == [T0 + timedelta(minutes=7)]


def test_a_cancelled_waiting_remediation_leaves_the_queue_and_never_starts() -> None:
    h = harness(limit=1)
    manual(h, "a")
    manual(h, "b", minute=1)
    manual(h, "c", minute=2)
    h.command(CommandKind.CANCEL, instance_id="b", remediation_id="r-b")
    finish(h, "a")
    assert states(h, "b", "c") == [None, S.RUNNING]
    assert not [t for t in h.transitions() if t.remediation_id == "r-b" and t.event == "START"]


def test_limit_zero_starts_nothing_and_a_kick_applies_a_raised_limit() -> None:
    h = harness(limit=0)
    manual(h, "a")
    manual(h, "b", minute=1)
    assert states(h, "a", "b") == [S.PENDING, S.PENDING]
    h.max_running = 1  # a new worker with a higher limit takes the cluster over
    h.kick()
    assert states(h, "a", "b") == [S.RUNNING, S.PENDING]
    h.kick()  # again: level-triggered, nothing more starts
    assert states(h, "a", "b") == [S.RUNNING, S.PENDING]


def test_a_lower_limit_starts_nothing_until_enough_have_finished() -> None:
    h = harness(limit=3)
    for n, instance in enumerate("abc"):
        manual(h, instance, minute=n)
    h.max_running = 1
    manual(h, "d", minute=4)
    assert states(h, "d") == [S.PENDING]
    finish(h, "a")
    assert states(h, "d") == [S.PENDING]  # b and c still hold more than the limit
    finish(h, "b")
    finish(h, "c")
    assert states(h, "d") == [S.RUNNING]


def test_a_replayed_last_report_starts_nothing_more() -> None:
    h = harness(limit=1)
    manual(h, "a")
    manual(h, "b", minute=1)
    state = h.state("c1", "a")
    assert state is not None
    assert state.open is not None
    last = len(state.open.remediation.operations) - 1
    finish(h, "a")
    before = len(h.transitions())
    done = StepReport(
        remediation_id="r-a",
        cluster_id="c1",
        instance_id="a",
        step=last,
        operation_id=state.open.remediation.operations[last].operation_id,
        kind=ReportKind.DONE,
        observed_at=NOW,
    )
    h.report(done)  # redelivered after a crash
    h.kick()
    assert len(h.transitions()) == before
    assert states(h, "b") == [S.RUNNING]
