"""Carrying a remediation out, in the pure core: plans, grants, step reports, slots."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from remediator.domain import execution, slots
from remediator.domain.commands import Command, CommandKind, handle
from remediator.domain.correlate import InstanceState
from remediator.domain.execution import Grant, ReportKind, StepReport, apply_report, plan, start
from remediator.domain.models import (
    RemediationMode,
    RemediationState,
    RemediationTransition,
    StepAction,
    StepState,
)
from remediator.domain.slots import ClusterSlots, SlotRequest, SlotRequestKind
from tests.builders import T0

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


def grant(rid: str = "r1", instance: str = "i1") -> Grant:
    return Grant(remediation_id=rid, cluster_id="c1", instance_id=instance)


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
    return start(create(mode), grant(), NOW).state


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


def test_only_host_aware_provisioning_avoids_the_current_host() -> None:
    host_aware = plan(_open(create(M.HOST_AWARE)))
    assert [op.avoid_current_host for op in host_aware] == [False, False, True]
    assert not any(op.avoid_current_host for op in plan(_open(create(M.VM_ONLY))))


def _open(state: InstanceState) -> Any:
    assert state.open is not None
    return state.open.remediation


def test_a_grant_starts_a_pending_remediation_with_its_plan_recorded() -> None:
    started = start(create(), grant(), NOW)
    (t,) = started.transitions
    assert (t.from_state, t.to_state, t.event, t.sequence) == (S.PENDING, S.RUNNING, "START", 2)
    rem = _open(started.state)
    assert rem.start_time == NOW
    assert [op.action for op in rem.operations] == [
        StepAction.CORDON_HOST,
        StepAction.DELETE_VM,
        StepAction.PROVISION_VM,
    ]
    assert not started.give_back


def test_a_repeated_grant_changes_nothing_and_keeps_the_slot() -> None:
    state = running()
    again = start(state, grant(), NOW + timedelta(seconds=5))
    assert again.state is state
    assert again.transitions == ()
    assert not again.give_back


def test_a_grant_for_a_cancelled_remediation_is_given_back() -> None:
    state = create()
    cancel = Command(
        command_id="x",
        kind=CommandKind.CANCEL,
        cluster_id="c1",
        instance_id="i1",
        principal="bob",
        issued_at=T0,
        remediation_id="r1",
    )
    cancelled = handle(state, cancel, T0).state
    started = start(cancelled, grant(), NOW)
    assert started.transitions == ()
    assert started.give_back
    assert started.state.closed[0].state is S.CANCELLED


def test_a_grant_for_an_unknown_instance_is_given_back() -> None:
    assert start(None, grant(), NOW).give_back


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
    done = state.closed[0]
    assert done.end_time == NOW
    assert [op.state for op in done.operations] == [StepState.DONE, StepState.DONE]


def test_a_failed_step_fails_the_remediation_with_its_error() -> None:
    state = running(M.HOST_AWARE)
    state = apply_report(state, report(state, 0, ReportKind.STARTED), NOW).state
    applied = apply_report(state, report(state, 0, ReportKind.FAILED, error="host busy"), NOW)
    (t,) = applied.transitions
    assert (t.event, t.to_state) == ("FAIL", S.FAILED)
    failed = applied.state.closed[0]
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
    rem = execution.running_remediation(running())
    assert rem is not None
    assert rem.state is S.RUNNING


# -- the cluster's slots ------------------------------------------------------------------


def req(kind: SlotRequestKind, rid: str, instance: str | None = None) -> SlotRequest:
    return SlotRequest(
        kind=kind,
        cluster_id="c1",
        instance_id=instance or f"i-{rid}",
        remediation_id=rid,
        occurred_at=NOW,
    )


ENQ, REL = SlotRequestKind.ENQUEUE, SlotRequestKind.RELEASE


def feed(requests: list[SlotRequest], limit: int = 2) -> tuple[ClusterSlots, list[str]]:
    current: ClusterSlots | None = None
    granted: list[str] = []
    for request in requests:
        decision = slots.handle(current, request, limit)
        current = decision.slots
        granted += [g.remediation_id for g in decision.grants]
    assert current is not None
    return current, granted


def test_at_most_limit_hold_a_slot_and_the_rest_wait_in_order() -> None:
    state, granted = feed([req(ENQ, r) for r in ("a", "b", "c", "d")])
    assert granted == ["a", "b"]
    assert [e.remediation_id for e in state.queue] == ["c", "d"]
    state, granted = feed([*(req(ENQ, r) for r in "abcd"), req(REL, "b"), req(REL, "a")])
    assert granted == ["a", "b", "c", "d"]
    assert [e.remediation_id for e in state.granted] == ["c", "d"]


def test_a_release_of_a_queued_remediation_takes_it_out_of_the_queue() -> None:
    state, granted = feed([req(ENQ, "a"), req(ENQ, "b"), req(REL, "b")], limit=1)
    assert granted == ["a"]
    assert state.queue == []
    _, granted = feed([req(ENQ, "a"), req(ENQ, "b"), req(REL, "b"), req(REL, "a")], limit=1)
    assert granted == ["a"]  # b was cancelled while waiting: never granted


def test_slot_requests_are_idempotent() -> None:
    once, granted_once = feed([req(ENQ, "a"), req(ENQ, "b"), req(REL, "a")], limit=1)
    twice, granted_twice = feed(
        [req(ENQ, "a"), req(ENQ, "a"), req(ENQ, "b"), req(REL, "a"), req(REL, "a")], limit=1
    )
    assert once == twice
    assert granted_once == granted_twice == ["a", "b"]
    # A late repeat of an ENQUEUE after its RELEASE does not queue it again.
    late, granted = feed([req(ENQ, "a"), req(REL, "a"), req(ENQ, "a")], limit=1)
    assert granted == ["a"]
    assert late.queue == late.granted == []


def test_released_ids_are_bounded() -> None:
    requests = [req(k, str(n)) for n in range(slots.MAX_RELEASED + 10) for k in (ENQ, REL)]
    state, _ = feed(requests)
    assert len(state.released) == slots.MAX_RELEASED
    assert state.released[-1] == str(slots.MAX_RELEASED + 9)


def test_a_lower_limit_grants_nothing_until_enough_are_released() -> None:
    state, _ = feed([req(ENQ, r) for r in "abc"], limit=3)
    decision = slots.handle(state, req(ENQ, "d"), limit=1)
    assert decision.grants == ()
    decision = slots.handle(decision.slots, req(REL, "a"), limit=1)
    assert decision.grants == ()


def _t(from_state: S | None, to_state: S) -> RemediationTransition:
    state = running()
    rem = _open(state).model_copy(update={"state": to_state})
    return RemediationTransition(
        transition_id="t",
        remediation_id=rem.id,
        sequence=2,
        from_state=from_state,
        to_state=to_state,
        occurred_at=NOW,
        actor="x",
        reason="y",
        remediation=rem,
    )


@pytest.mark.parametrize(
    ("from_state", "to_state", "expected"),
    [
        (None, S.PENDING, ENQ),  # manual create
        (S.PENDING_APPROVAL, S.PENDING, ENQ),  # approved
        (S.PENDING, S.CANCELLED, REL),
        (S.PENDING, S.AUTO_RESOLVED, REL),
        (S.RUNNING, S.SUCCEEDED, REL),
        (S.RUNNING, S.FAILED, REL),
        (S.PENDING, S.RUNNING, None),
        (S.RUNNING, S.RUNNING, None),
        (S.PENDING, S.PENDING, None),  # a signal attached
        (None, S.PENDING_APPROVAL, None),
        (S.PENDING_APPROVAL, S.CANCELLED, None),  # rejected: never held a slot
    ],
)
def test_which_transitions_ask_for_or_give_back_a_slot(
    from_state: S | None, to_state: S, expected: SlotRequestKind | None
) -> None:
    requests = slots.requests_for([_t(from_state, to_state)])
    assert [r.kind for r in requests] == ([] if expected is None else [expected])


def test_admit_changes_nothing_but_grants_what_a_raised_limit_allows() -> None:
    state, granted = feed([req(ENQ, r) for r in "abc"], limit=0)
    assert granted == []
    assert slots.waiting_with_room(state, 2)
    assert not slots.waiting_with_room(state, 0)
    decision = slots.handle(state, req(SlotRequestKind.ADMIT, "-", "-"), limit=2)
    assert [g.remediation_id for g in decision.grants] == ["a", "b"]
    assert not slots.waiting_with_room(decision.slots, 2)
    again = slots.handle(decision.slots, req(SlotRequestKind.ADMIT, "-", "-"), limit=2)
    assert again.grants == ()
    assert again.slots == decision.slots
