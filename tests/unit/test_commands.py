"""API commands on one instance: create, approve, reject, cancel, get, list, claims."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from remediator.domain import commands
from remediator.domain.commands import (
    Claim,
    Command,
    CommandKind,
    Cursor,
    Handled,
    Order,
    OrderField,
    handle,
)
from remediator.domain.correlate import decide
from remediator.domain.models import (
    AuditNote,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.policy import Policy
from remediator.domain.replies import ErrorCode
from remediator.domain.state import MAX_AUDIT_NOTES, InstanceState
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
    cursor = Cursor(time=page[-1].create_time, id=page[-1].id)
    rest = instance.handle(cmd(K.LIST, limit=10, after=cursor)).reply.remediations or []
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


# --- LIST order: order_by create_time / update_time, asc / desc, ties broken by id -------


def record(rid: str, created: int, updated: int) -> Remediation:
    """A remediation created and last updated ``created`` / ``updated`` minutes after T0."""
    return Remediation(
        id=rid,
        cluster_id="c1",
        instance_id=f"i-{rid}",
        mode=RemediationMode.VM_ONLY,
        trigger=RemediationTrigger.MANUAL,
        state=S.PENDING,
        requested_by="alice",
        create_time=T0 + timedelta(minutes=created),
        update_time=T0 + timedelta(minutes=updated),
    )


# Creation order a < b = c < d (b and c at the same minute); update order d < c < a = b.
RECORDS = [record("a", 1, 9), record("b", 2, 9), record("c", 2, 5), record("d", 3, 4)]

ORDERS = {
    "create_time desc": ["d", "c", "b", "a"],
    "create_time asc": ["a", "b", "c", "d"],
    "update_time desc": ["b", "a", "c", "d"],
    "update_time asc": ["d", "c", "a", "b"],
}


@pytest.mark.parametrize(("order_by", "expected"), ORDERS.items())
def test_list_orders_by_the_asked_time_and_breaks_ties_by_id_the_same_way(
    order_by: str, expected: list[str]
) -> None:
    listed = commands.select(RECORDS, cmd(K.LIST, order=Order.parse(order_by)))
    assert [r.id for r in listed] == expected


def test_list_default_order_is_newest_created_first() -> None:
    assert [r.id for r in commands.select(RECORDS, cmd(K.LIST))] == ORDERS["create_time desc"]


@pytest.mark.parametrize(("order_by", "expected"), ORDERS.items())
@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_paging_by_cursor_visits_every_record_once_in_every_order(
    order_by: str, expected: list[str], page_size: int
) -> None:
    order = Order.parse(order_by)
    seen: list[str] = []
    after = None
    while True:
        page = commands.select(
            reversed(RECORDS), cmd(K.LIST, order=order, after=after, limit=page_size)
        )
        seen.extend(r.id for r in page)
        if len(page) < page_size:
            break
        after = order.cursor(page[-1])
    assert seen == expected


def test_a_cursor_is_the_position_in_its_own_order() -> None:
    """The same record is a different position in another order: (update_time, id)."""
    order = Order.parse("update_time asc")
    cursor = order.cursor(RECORDS[2])  # c: updated at minute 5
    assert (cursor.time, cursor.id) == (T0 + timedelta(minutes=5), "c")
    rest = commands.select(RECORDS, cmd(K.LIST, order=order, after=cursor))
    assert [r.id for r in rest] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "field", "descending"),
    [
        ("", OrderField.CREATE_TIME, True),
        ("create_time", OrderField.CREATE_TIME, True),
        ("create_time desc", OrderField.CREATE_TIME, True),
        ("create_time asc", OrderField.CREATE_TIME, False),
        ("update_time", OrderField.UPDATE_TIME, True),
        ("update_time desc", OrderField.UPDATE_TIME, True),
        ("update_time asc", OrderField.UPDATE_TIME, False),
    ],
)
def test_order_by_accepts_a_time_field_and_an_optional_direction(
    text: str, field: OrderField, descending: bool
) -> None:
    assert Order.parse(text) == Order(field=field, descending=descending)


@pytest.mark.parametrize(
    "text",
    [
        "id",
        "create_time up",
        "CREATE_TIME",
        "create_time DESC",
        "create_time  asc",
        " create_time",
        "create_time ",
        "create_time asc id",
        "create_time,update_time",
        "-create_time",
        " ",
    ],
)
def test_order_by_refuses_anything_else_naming_the_allowed_values(text: str) -> None:
    with pytest.raises(ValueError, match="update_time asc") as refused:
        Order.parse(text)
    assert repr(text) in str(refused.value)


def test_commands_and_cursors_of_the_previous_version_still_read() -> None:
    """A LIST still on the inbox, or a page token, from before order_by: ``before`` and
    ``create_time`` are read as the cursor of the default order."""
    old = cmd(K.LIST, before={"create_time": "2026-11-24T12:02:00Z", "id": "c"})
    assert old.order == commands.DEFAULT_ORDER
    assert old.after == Cursor(time=T0 + timedelta(minutes=2), id="c")
    assert [r.id for r in commands.select(RECORDS, old)] == ["b", "a"]


def test_a_host_power_cycle_is_created_directly_never_as_an_approval_override() -> None:
    created = handle(
        None, cmd(K.CREATE, remediation_id="pc-1", mode=RemediationMode.HOST_POWER_CYCLE), NOW
    )
    assert created.reply.remediation is not None
    assert created.reply.remediation.mode is RemediationMode.HOST_POWER_CYCLE
    state, rid = automated()
    refused = handle(
        state, cmd(K.APPROVE, remediation_id=rid, mode=RemediationMode.HOST_POWER_CYCLE), NOW
    )
    assert refused.reply.error_code is ErrorCode.INVALID_ARGUMENT
    assert "cannot be set as an approval override" in (refused.reply.error_message or "")
    assert refused.transitions == ()
    assert refused.state.open == state.open


# --- two-person approval (issue 19) ----------------------------------------------------

EVICT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"


def test_an_override_to_a_two_person_mode_needs_a_second_different_person() -> None:
    state, rid = automated()
    first = handle(state, cmd(K.APPROVE, remediation_id=rid, mode=EVICT, comment="bad"), NOW)
    rem = first.reply.remediation
    assert rem is not None
    # Recorded, still waiting; the record says who approved and that two are needed.
    assert (rem.state, rem.mode, rem.reviewed_by) == (S.PENDING_APPROVAL, rem.mode, None)
    assert rem.approvals_required == 2
    assert [(a.principal, a.mode.value, a.comment) for a in rem.approvals] == [
        ("alice", EVICT, "bad")
    ]
    (transition,) = first.transitions
    assert (transition.from_state, transition.to_state, transition.event) == (
        S.PENDING_APPROVAL,
        S.PENDING_APPROVAL,
        "RECORD_APPROVAL",
    )
    (event,) = first.events
    assert (event.kind.value, event.instance_id, event.mode) == (
        "APPROVAL_RECORDED",
        "i1",
        RemediationMode.EVICT_WITHOUT_REPLACEMENT,
    )
    # The same person again: refused, nothing changes.
    again = handle(first.state, cmd(K.APPROVE, remediation_id=rid, mode=EVICT), NOW)
    assert again.reply.error_code is ErrorCode.FAILED_PRECONDITION
    assert "different person" in (again.reply.error_message or "")
    assert (again.transitions, again.events) == ((), ())
    # Someone else: approved, in the mode both approved.
    second = handle(
        again.state, cmd(K.APPROVE, remediation_id=rid, mode=EVICT, principal="bob"), NOW
    )
    rem = second.reply.remediation
    assert rem is not None
    assert (rem.state, rem.mode.value, rem.reviewed_by) == (S.PENDING, EVICT, "bob")
    assert [a.principal for a in rem.approvals] == ["alice", "bob"]
    assert second.events == ()


def test_a_second_approval_of_a_lighter_mode_is_an_ordinary_approval() -> None:
    state, rid = automated()
    first = handle(state, cmd(K.APPROVE, remediation_id=rid, mode=EVICT), NOW)
    second = handle(first.state, cmd(K.APPROVE, remediation_id=rid, principal="bob"), NOW)
    rem = second.reply.remediation
    assert rem is not None
    # The recommendation's own mode (HOST_AWARE), which one approval suffices for.
    assert (rem.state, rem.mode, rem.reviewed_by) == (S.PENDING, RemediationMode.HOST_AWARE, "bob")


def test_a_policy_without_two_person_modes_approves_at_once() -> None:
    state, rid = automated()
    policy = Policy(two_person_modes=[])
    handled = handle(state, cmd(K.APPROVE, remediation_id=rid, mode=EVICT), NOW, policy)
    rem = handled.reply.remediation
    assert rem is not None
    assert (rem.state, rem.approvals) == (S.PENDING, [])


def test_a_cluster_may_name_its_own_two_person_modes() -> None:
    policy = Policy.model_validate(
        {"clusters": {"c1": {"two_person_modes": ["REMEDIATION_MODE_HOST_AWARE"]}}}
    )
    assert policy.needs_two("c1", RemediationMode.HOST_AWARE)
    assert not policy.needs_two("c1", RemediationMode.EVICT_WITHOUT_REPLACEMENT)
    assert policy.needs_two("c2", RemediationMode.EVICT_WITHOUT_REPLACEMENT)
    state, rid = automated()  # a HOST_AWARE recommendation in c1
    handled = handle(state, cmd(K.APPROVE, remediation_id=rid), NOW, policy)
    assert handled.reply.remediation is not None
    assert handled.reply.remediation.state is S.PENDING_APPROVAL


@pytest.mark.parametrize("two_person_manual", [False, True])
def test_manual_creates_keep_the_providers_behaviour_unless_the_policy_says(
    two_person_manual: bool,
) -> None:
    policy = Policy(two_person_manual=two_person_manual)
    created = handle(None, cmd(K.CREATE, remediation_id="r1", mode=EVICT), NOW, policy)
    rem = created.reply.remediation
    assert rem is not None
    if not two_person_manual:
        assert (rem.state, rem.approvals) == (S.PENDING, [])
        return
    assert rem.state is S.PENDING_APPROVAL
    assert [a.principal for a in rem.approvals] == ["alice"]  # the requester's approval
    assert [e.kind.value for e in created.events] == ["APPROVAL_RECORDED"]
    mine = handle(created.state, cmd(K.APPROVE, remediation_id="r1"), NOW, policy)
    assert mine.reply.error_code is ErrorCode.FAILED_PRECONDITION
    theirs = handle(mine.state, cmd(K.APPROVE, remediation_id="r1", principal="bob"), NOW, policy)
    assert theirs.reply.remediation is not None
    assert theirs.reply.remediation.state is S.PENDING


# --- API calls noted on the instance (issue 19) ----------------------------------------


def note(n: int, **fields: Any) -> AuditNote:
    values: dict[str, Any] = {
        "at": NOW + timedelta(seconds=n),
        "principal": "viv",
        "role": "viewer",
        "action": "remediation.cancel",
        "outcome": "REFUSED",
        "status": 403,
        "error": "PERMISSION_DENIED",
    }
    return AuditNote.model_validate({**values, **fields})


def test_api_calls_are_noted_on_the_instance_bounded_and_once_each() -> None:
    state, _ = automated()
    for n in range(MAX_AUDIT_NOTES + 5):
        handled = handle(state, cmd(K.AUDIT, audit=note(n)), NOW)
        assert handled.transitions == ()
        state = handled.state
    again = handle(state, cmd(K.AUDIT, audit=note(MAX_AUDIT_NOTES + 4)), NOW)  # a replay
    assert again.state.audit == state.audit
    assert len(state.audit) == MAX_AUDIT_NOTES
    assert state.audit[0].at == NOW + timedelta(seconds=5)  # the oldest went first
    explained = handle(state, cmd(K.EXPLAIN), NOW).reply.explanation
    assert explained is not None
    assert explained.audit == state.audit
