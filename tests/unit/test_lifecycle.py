"""The lifecycle table: every allowed move works, every other is refused
and leaves the record unchanged."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from remediator.domain import lifecycle
from remediator.domain.lifecycle import Event, IllegalTransition
from remediator.domain.models import (
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)

S = RemediationState
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

# The contract's table, written out independently of lifecycle.TRANSITIONS.
ALLOWED_MOVES = {
    (S.PENDING_APPROVAL, Event.APPROVE): S.PENDING,
    (S.PENDING_APPROVAL, Event.REJECT): S.CANCELLED,
    (S.PENDING_APPROVAL, Event.CANCEL): S.CANCELLED,
    # Approval expiry (issue 13): PENDING_APPROVAL -> CANCELLED, as CONTRACT allows a cancel.
    (S.PENDING_APPROVAL, Event.EXPIRE): S.CANCELLED,
    (S.PENDING, Event.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, Event.AUTO_RESOLVE): S.AUTO_RESOLVED,
    (S.PENDING, Event.AUTO_RESOLVE): S.AUTO_RESOLVED,
    (S.PENDING, Event.START): S.RUNNING,
    (S.RUNNING, Event.SUCCEED): S.SUCCEEDED,
    (S.RUNNING, Event.FAIL): S.FAILED,
    # The modes that cordon the host first (SDK 3.1.1's states).
    (S.PENDING, Event.QUARANTINE): S.QUARANTINING,
    (S.QUARANTINING, Event.STEP_STARTED): S.QUARANTINING,
    (S.QUARANTINING, Event.QUARANTINED): S.QUARANTINED,
    (S.QUARANTINED, Event.STEP_STARTED): S.RUNNING,
    (S.QUARANTINING, Event.FAIL): S.FAILED,
    (S.QUARANTINED, Event.FAIL): S.FAILED,
    **{
        (state, event): state
        for state in (S.PENDING_APPROVAL, S.PENDING, S.QUARANTINING, S.QUARANTINED, S.RUNNING)
        for event in (Event.ATTACH_SIGNAL, Event.LINK_ALERT)
    },
    (S.RUNNING, Event.STEP_STARTED): S.RUNNING,
    (S.RUNNING, Event.STEP_DONE): S.RUNNING,
    (S.PENDING_APPROVAL, Event.UPGRADE_MODE): S.PENDING_APPROVAL,
    (S.PENDING, Event.UPGRADE_MODE): S.PENDING,
    # Two-person approval: the first of two approvals is recorded, the state stays.
    (S.PENDING_APPROVAL, Event.RECORD_APPROVAL): S.PENDING_APPROVAL,
}
CREATIONS = (Event.CREATE_AUTOMATED, Event.CREATE_MANUAL, Event.CREATE_MANUAL_FOR_APPROVAL)
MOVING_EVENTS = [e for e in Event if e not in CREATIONS]


def record(
    state: RemediationState, trigger: RemediationTrigger = RemediationTrigger.AUTOMATED
) -> Remediation:
    return Remediation(
        id="r-1",
        cluster_id="c1",
        instance_id="i1",
        mode=RemediationMode.REBOOT_VM,
        trigger=trigger,
        state=state,
        requested_by="system:remediator",
        create_time=T0,
        update_time=T0,
    )


@pytest.mark.parametrize(("move", "to_state"), ALLOWED_MOVES.items(), ids=lambda v: str(v))
def test_allowed_move_reaches_its_state_and_stamps_update_time(
    move: tuple[RemediationState, Event], to_state: RemediationState
) -> None:
    from_state, event = move
    before = record(from_state)
    after = lifecycle.apply(before, event, now=T1)
    assert after.state is to_state
    assert after.update_time == T1
    assert before.state is from_state  # the input record is untouched


REFUSED = [
    (state, event)
    for state, event in itertools.product(S, MOVING_EVENTS)
    if (state, event) not in ALLOWED_MOVES
]


@pytest.mark.parametrize(("from_state", "event"), REFUSED, ids=lambda v: str(v))
def test_refused_move_raises_and_changes_nothing(
    from_state: RemediationState, event: Event
) -> None:
    before = record(from_state)
    snapshot = before.model_dump()
    with pytest.raises(IllegalTransition):
        lifecycle.apply(before, event, now=T1)
    assert before.model_dump() == snapshot


def test_table_matches_the_contract_exactly() -> None:
    moves = {k: v for k, v in lifecycle.TRANSITIONS.items() if k[0] is not None}
    assert moves == ALLOWED_MOVES
    assert lifecycle.TRANSITIONS[(None, Event.CREATE_AUTOMATED)] is S.PENDING_APPROVAL
    assert lifecycle.TRANSITIONS[(None, Event.CREATE_MANUAL)] is S.PENDING


@pytest.mark.parametrize("state", [S.PENDING_APPROVAL, S.PENDING])
def test_manual_remediation_never_auto_resolves(state: RemediationState) -> None:
    before = record(state, RemediationTrigger.MANUAL)
    with pytest.raises(IllegalTransition, match="only automated"):
        lifecycle.apply(before, Event.AUTO_RESOLVE, now=T1)


def test_quarantining_and_quarantined_cannot_be_cancelled() -> None:
    for state in (S.QUARANTINING, S.QUARANTINED):
        with pytest.raises(IllegalTransition):
            lifecycle.apply(record(state), Event.CANCEL, now=T1)


def test_start_sets_start_time_and_terminal_sets_end_time() -> None:
    quarantining = lifecycle.apply(record(S.PENDING), Event.QUARANTINE, now=T1)
    assert quarantining.start_time == T1
    running = lifecycle.apply(record(S.PENDING), Event.START, now=T1)
    assert running.start_time == T1
    assert running.end_time is None
    done = lifecycle.apply(running, Event.SUCCEED, now=T1 + timedelta(minutes=1))
    assert done.end_time == T1 + timedelta(minutes=1)


def test_changes_are_merged_into_the_new_record() -> None:
    after = lifecycle.apply(
        record(S.PENDING_APPROVAL),
        Event.APPROVE,
        now=T1,
        changes={"reviewed_by": "alice", "review_time": T1, "review_comment": "ok"},
    )
    assert (after.reviewed_by, after.review_time, after.review_comment) == ("alice", T1, "ok")


@pytest.mark.parametrize("event", [Event.CREATE_AUTOMATED, Event.CREATE_MANUAL])
def test_creation_events_cannot_be_applied_to_an_existing_record(event: Event) -> None:
    with pytest.raises(IllegalTransition, match="already exists"):
        lifecycle.apply(record(S.PENDING), event, now=T1)


def test_create_checks_state_and_trigger() -> None:
    lifecycle.create(record(S.PENDING_APPROVAL), Event.CREATE_AUTOMATED)
    lifecycle.create(record(S.PENDING, RemediationTrigger.MANUAL), Event.CREATE_MANUAL)
    with pytest.raises(IllegalTransition):
        lifecycle.create(record(S.PENDING), Event.CREATE_AUTOMATED)
    with pytest.raises(IllegalTransition):
        lifecycle.create(record(S.PENDING, RemediationTrigger.AUTOMATED), Event.CREATE_MANUAL)
