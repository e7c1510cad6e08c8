"""API commands on one instance: create, approve, reject, cancel, get, list, claims."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from remediator.domain import commands
from remediator.domain.commands import Claim, Command, CommandKind, Cursor, Handled, handle
from remediator.domain.correlate import decide
from remediator.domain.models import (
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.replies import ErrorCode
from remediator.domain.state import InstanceState
from tests.builders import T0, run

NOW = T0 + timedelta(minutes=1)
K = CommandKind
S = RemediationState


def cmd(kind: CommandKind, **fields: Any) -> Command:
    values: dict[str, Any] = {
        "command_id": str(uuid.uuid4()),
        "kind": kind,
        "cluster_id": "c1",
        "instance_id": "i1",
        "principal": "alice",
        "issued_at": NOW,
    }
    values.update(fields)
    return Command.model_validate(values)


class Instance:
    """One instance as its writer keeps it: the hot record, closed ones in the archive."""

    def __init__(self, state: InstanceState | None = None) -> None:
        self.state = state
        self.archive: list[Any] = []

    def handle(self, command: Command, now: Any = NOW) -> Handled:
        handled = handle(self.state, command, now, archived=lambda: self.archive)
        self.state = handled.state
        self.archive[:0] = [t.remediation for t in handled.transitions if t.to_state.is_terminal]
        return handled


def automated() -> tuple[InstanceState, str]:
    decision = decide(None, run(), T0)
    return decision.state, decision.transitions[0].remediation_id


def test_create_opens_a_manual_pending_remediation_with_default_mode() -> None:
    handled = handle(None, cmd(K.CREATE, remediation_id="r1", reason="flaky GPU"), NOW)
    rem = handled.reply.remediation
    assert rem is not None
    assert handled.reply.created
    assert (rem.id, rem.state, rem.trigger, rem.mode) == (
        "r1",
        S.PENDING,
        RemediationTrigger.MANUAL,
        RemediationMode.VM_ONLY,
    )
    assert (rem.requested_by, rem.reason, rem.create_time) == ("alice", "flaky GPU", NOW)
    (transition,) = handled.transitions
    assert (transition.sequence, transition.from_state, transition.to_state) == (1, None, S.PENDING)
    assert transition.actor == "alice"


def test_create_again_with_the_same_id_returns_the_same_record_and_changes_nothing() -> None:
    first = handle(None, cmd(K.CREATE, remediation_id="r1"), NOW)
    again = handle(first.state, cmd(K.CREATE, remediation_id="r1"), NOW + timedelta(seconds=5))
    assert again.transitions == ()
    assert again.reply.remediation == first.reply.remediation
    assert not again.reply.created
    assert again.state.open == first.state.open


def test_same_id_with_another_mode_is_already_exists() -> None:
    first = handle(None, cmd(K.CREATE, remediation_id="r1"), NOW)
    other = handle(
        first.state, cmd(K.CREATE, remediation_id="r1", mode="REMEDIATION_MODE_REBOOT_VM"), NOW
    )
    assert other.reply.error_code is ErrorCode.ALREADY_EXISTS
    assert other.transitions == ()


def test_create_on_an_instance_with_an_open_remediation_names_it() -> None:
    state, open_id = automated()
    handled = handle(state, cmd(K.CREATE, remediation_id="r2"), NOW)
    assert handled.reply.error_code is ErrorCode.FAILED_PRECONDITION
    assert open_id in (handled.reply.error_message or "")
    assert handled.transitions == ()


def test_approve_moves_to_pending_with_review_fields_and_mode_override() -> None:
    state, rid = automated()
    handled = handle(
        state,
        cmd(K.APPROVE, remediation_id=rid, comment="go", mode="REMEDIATION_MODE_REBOOT_VM"),
        NOW,
    )
    rem = handled.reply.remediation
    assert rem is not None
    assert (rem.state, rem.mode, rem.reviewed_by, rem.review_time, rem.review_comment) == (
        S.PENDING,
        RemediationMode.REBOOT_VM,
        "alice",
        NOW,
        "go",
    )
    assert handled.transitions[0].sequence == 2
    assert "approved by alice" in handled.transitions[0].reason


def test_reject_cancels_with_review_fields() -> None:
    state, rid = automated()
    rem = handle(
        state, cmd(K.REJECT, remediation_id=rid, comment="false alarm"), NOW
    ).reply.remediation
    assert rem is not None
    assert (rem.state, rem.reviewed_by, rem.review_comment) == (S.CANCELLED, "alice", "false alarm")
    assert rem.end_time == NOW


@pytest.mark.parametrize("first", [K.APPROVE, None])
def test_cancel_works_from_pending_approval_and_pending(first: CommandKind | None) -> None:
    state, rid = automated()
    if first is not None:
        state = handle(state, cmd(first, remediation_id=rid), NOW).state
    handled = handle(state, cmd(K.CANCEL, remediation_id=rid), NOW)
    assert handled.reply.remediation is not None
    assert handled.reply.remediation.state is S.CANCELLED
    assert handled.state.open is None


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        ([K.APPROVE], K.APPROVE),
        ([K.APPROVE], K.REJECT),
        ([K.CANCEL], K.CANCEL),
        ([K.CANCEL], K.APPROVE),
        ([K.REJECT], K.REJECT),
    ],
)
def test_refused_move_is_failed_precondition_and_changes_nothing(
    setup: list[CommandKind], kind: CommandKind
) -> None:
    state, rid = automated()
    instance = Instance(state)
    for step in setup:
        instance.handle(cmd(step, remediation_id=rid))
    before, archived = instance.state, list(instance.archive)
    handled = instance.handle(cmd(kind, remediation_id=rid))
    assert handled.reply.error_code is ErrorCode.FAILED_PRECONDITION
    assert "cannot" in (handled.reply.error_message or "")
    assert handled.transitions == ()
    assert handled.state.open == before.open  # type: ignore[union-attr]
    assert instance.archive == archived


def test_unknown_remediation_is_not_found() -> None:
    state, _ = automated()
    for kind in (K.GET, K.APPROVE, K.CANCEL):
        assert (
            handle(state, cmd(kind, remediation_id="nope"), NOW).reply.error_code
            is ErrorCode.NOT_FOUND
        )


def test_replayed_command_gets_its_first_reply_and_changes_nothing() -> None:
    state, rid = automated()
    approve = cmd(K.APPROVE, remediation_id=rid)
    first = handle(state, approve, NOW)
    replay = handle(first.state, approve, NOW + timedelta(seconds=1))
    assert replay.transitions == ()
    assert replay.reply.ok
    assert replay.reply.remediation == first.reply.remediation


def test_remembered_replies_are_bounded() -> None:
    state, _rid = automated()
    for _ in range(commands.MAX_REMEMBERED_REPLIES + 10):
        state = handle(state, cmd(K.REJECT, remediation_id="missing"), NOW).state
    assert len(state.replies) == commands.MAX_REMEMBERED_REPLIES


def test_get_and_list_read_without_changing_state() -> None:
    state, rid = automated()
    got = handle(state, cmd(K.GET, remediation_id=rid), NOW)
    listed = handle(state, cmd(K.LIST), NOW)
    assert got.state is state
    assert listed.state is state
    assert got.reply.remediation is not None
    assert got.reply.remediation.id == rid
    assert [r.id for r in listed.reply.remediations or []] == [rid]


def test_list_is_newest_first_filtered_and_paged_by_cursor() -> None:
    instance = Instance()
    for minute in range(5):
        instance.handle(cmd(K.CREATE, remediation_id=f"r{minute}"), T0 + timedelta(minutes=minute))
        instance.handle(cmd(K.CANCEL, remediation_id=f"r{minute}"))
    page = instance.handle(cmd(K.LIST, limit=2)).reply.remediations or []
    assert [r.id for r in page] == ["r4", "r3"]
    cursor = Cursor(create_time=page[-1].create_time, id=page[-1].id)
    rest = instance.handle(cmd(K.LIST, limit=10, before=cursor)).reply.remediations or []
    assert [r.id for r in rest] == ["r2", "r1", "r0"]
    none = instance.handle(cmd(K.LIST, states=["PENDING"])).reply.remediations
    assert none == []


def test_claim_reserves_an_id_for_one_target_and_mode() -> None:
    create = cmd(K.CREATE, remediation_id="r1")
    kept, refusal = commands.claim(None, create)
    assert refusal is None
    assert kept == Claim(
        remediation_id="r1", cluster_id="c1", instance_id="i1", mode=RemediationMode.VM_ONLY
    )
    assert commands.claim(kept, create) == (kept, None)
    elsewhere = cmd(K.CREATE, remediation_id="r1", instance_id="i2")
    kept_again, refusal = commands.claim(kept, elsewhere)
    assert kept_again == kept
    assert refusal is not None
    assert refusal.error_code is ErrorCode.ALREADY_EXISTS
