"""API commands on one instance, applied by the instance's single writer.

The contract, the same shape as :func:`correlate.decide`::

    handle(state or None, command, now) -> Handled(new state, transitions, reply)

- ``CREATE`` opens a MANUAL remediation in PENDING. The same ``remediation_id`` again for
  the same instance and mode returns the existing record and changes nothing; with another
  mode it is ``ALREADY_EXISTS``. An instance with an open remediation refuses a new one
  (``FAILED_PRECONDITION``, naming it): invariant 1.
- ``APPROVE`` (optionally overriding the mode), ``REJECT`` and ``CANCEL`` move a
  remediation as the lifecycle table allows; any other move is ``FAILED_PRECONDITION`` and
  changes nothing.
- ``GET`` and ``LIST`` read; they never change the state. ``LIST`` selects with
  :func:`select`: filters, then the records after the page's cursor in the asked
  :class:`Order` (``create_time`` or ``update_time``, either way, ties broken by id).
- ``CLUSTERS`` is sent to every partition; its owner answers the clusters it holds
  (``pipeline/handlers.py``).
- A command is applied once: its reply is remembered under its ``command_id``, so a
  command replayed after a crash gets the reply of its first application and changes
  nothing (the first one may have been applied and persisted before the crash).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from remediator.domain.bounds import MAX_PAGE_BYTES, MAX_RECENT_BYTES, Text, echo
from remediator.domain.budget import measure
from remediator.domain.lifecycle import Event, IllegalTransition
from remediator.domain.models import (
    Approval,
    AuditNote,
    DecisionRecord,
    Identifier,
    OptOut,
    PolicyEvent,
    PolicyEventKind,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTransition,
    RemediationTrigger,
    Timestamp,
)
from remediator.domain.policy import DEFAULT_POLICY, Policy
from remediator.domain.replies import (
    ErrorCode,
    Explanation,
    QueuedProposal,
    RememberedReply,
    Reply,
)
from remediator.domain.state import (
    MAX_AUDIT_NOTES,
    InstanceState,
    record_change,
    record_creation,
)

#: The instance's closed remediations, newest first, read only when a command needs them
#: (they live in the archive, not in the hot record).
Archived = Callable[[], Sequence[Remediation]]


def _nothing_archived() -> Sequence[Remediation]:
    return ()


#: Replies remembered per instance for replayed commands.
MAX_REMEMBERED_REPLIES = 32

#: cluster_id (and instance_id) of a command about no one cluster: CLUSTERS, and a LIST
#: of the whole fleet (the API's cluster id ``-``).
EVERYWHERE = "*"


class CommandKind(enum.StrEnum):
    CREATE = "CREATE"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    GET = "GET"
    LIST = "LIST"
    # On the instance (policy): take it out of / back into automated remediation, explain.
    OPT_OUT = "OPT_OUT"
    OPT_IN = "OPT_IN"
    EXPLAIN = "EXPLAIN"
    # Lift a HELD_FOR_HUMAN hold: remediations carried out so far no longer count.
    LIFT_HOLD = "LIFT_HOLD"
    # On the cluster's safety owner: pause / resume automated remediation, read its state.
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    SAFETY = "SAFETY"
    # Sent to every partition (like a cluster-wide LIST): the clusters its owner holds.
    CLUSTERS = "CLUSTERS"
    # Told, not asked (no reply): an API call about the instance, for its timeline.
    AUDIT = "AUDIT"


class OrderField(enum.StrEnum):
    """The times a list can be ordered by (``order_by`` of the list endpoints)."""

    CREATE_TIME = "create_time"
    UPDATE_TIME = "update_time"


class Order(BaseModel):
    """The order of a list: a time field, either way, ties broken by id the same way.

    The id tie-break makes the order total, so a cursor (time, id) names one position and
    paging neither repeats nor skips records that share a timestamp.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: OrderField = OrderField.CREATE_TIME
    descending: bool = True

    @classmethod
    def parse(cls, text: str) -> Order:
        """``"create_time"``, ``"update_time desc"``, …; empty is the default order.

        Exactly a field, then optionally one space and ``asc`` or ``desc`` (the default):
        anything else raises :class:`ValueError` naming what is allowed.
        """
        if not text:
            return DEFAULT_ORDER
        name, space, direction = text.partition(" ")
        fields = {f.value: f for f in OrderField}
        if name not in fields or (space and direction not in ("asc", "desc")):
            raise ValueError(f"order_by {echo(text)} is not one of: {ORDER_BY_ALLOWED}")
        return cls(field=fields[name], descending=direction != "asc")

    def __str__(self) -> str:
        return f"{self.field.value} {'desc' if self.descending else 'asc'}"

    def key(self, record: Remediation) -> tuple[datetime, str]:
        time = record.create_time if self.field is OrderField.CREATE_TIME else record.update_time
        return (time, record.id)

    def cursor(self, record: Remediation) -> Cursor:
        """The position just after ``record`` in this order."""
        time, record_id = self.key(record)
        return Cursor(time=time, id=record_id)

    def is_after(self, record: Remediation, cursor: Cursor) -> bool:
        """Whether ``record`` comes after the position ``cursor`` in this order."""
        position = (cursor.time, cursor.id)
        return self.key(record) < position if self.descending else self.key(record) > position

    def sort(self, records: Iterable[Remediation]) -> list[Remediation]:
        return sorted(records, key=self.key, reverse=self.descending)


DEFAULT_ORDER = Order()

#: What ``order_by`` accepts, for the error message of anything else.
ORDER_BY_ALLOWED = ", ".join(
    f"{field.value}{suffix}" for field in OrderField for suffix in ("", " asc", " desc")
)


class Cursor(BaseModel):
    """A position in a list's order: the (time, id) of the last record of a page.

    Which time (created or updated) and which way is the command's :class:`Order`; the
    page token binds the two together.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Named ``create_time`` before lists could be ordered by update time: still read so,
    # for a page token or an inbox command written by the previous version.
    time: Timestamp = Field(validation_alias=AliasChoices("time", "create_time"))
    id: str


def select(records: Iterable[Remediation], command: Command) -> list[Remediation]:
    """Records matching the LIST command's filters, after its cursor, in its order, limited."""
    order = command.order
    chosen = [
        r
        for r in records
        if (not command.states or r.state in command.states)
        and (not command.modes or r.mode in command.modes)
        and (not command.triggers or r.trigger in command.triggers)
        and (command.after is None or order.is_after(r, command.after))
    ]
    return order.sort(chosen)[: command.limit]


def fit_page(
    records: Sequence[Remediation], max_bytes: int = MAX_PAGE_BYTES
) -> tuple[list[Remediation], bool]:
    """The first of ``records`` (at least one) that fit in ``max_bytes`` serialized, and
    whether that left some out: a page must fit in one Kafka record (the reply) whatever
    its page_size; the client pages on for the rest."""
    total = 0
    for index, record in enumerate(records):
        total += measure(record) + 1
        if index > 0 and total > max_bytes:
            return list(records[:index]), True
    return list(records), False


def list_reply(command: Command, records: Iterable[Remediation]) -> Reply:
    """The answer to a LIST: the selected records, cut short if they are too large."""
    page, cut = fit_page(select(records, command))
    return Reply(command_id=command.command_id, remediations=page, truncated=cut)


def merge_pages(
    pages: Sequence[tuple[Sequence[Remediation], bool]], order: Order, size: int
) -> tuple[list[Remediation], bool]:
    """One page of at most ``size`` records from the LIST replies of one or more owners
    (each its best records in ``order`` and whether it was cut short), and whether more
    records follow. A reply cut short ends the page at its last record: that owner's
    records after it are not known, so nothing after it in the order may be shown yet."""
    records = order.sort(record for chosen, _ in pages for record in chosen)
    ends = [chosen[-1] for chosen, cut in pages if cut and chosen]
    if ends:
        end = order.cursor(order.sort(ends)[0])
        records = [r for r in records if not order.is_after(r, end)]
    page, cut = fit_page(records[:size])
    return page, bool(ends) or cut or len(records) > size


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str = Field(min_length=1, max_length=128)
    kind: CommandKind
    cluster_id: Identifier
    instance_id: Identifier
    principal: str
    issued_at: Timestamp
    #: The caller's role (auth.Role's value); None from an API older than 0.6. During a
    #: change freeze only an admin may CREATE (domain/freeze.py).
    role: str | None = None
    remediation_id: str | None = None
    mode: RemediationMode | None = None
    # Clipped, whoever sent the command (the API refuses longer ones already).
    reason: Text | None = None
    comment: Text | None = None
    # LIST only: filters, the order, the cursor, and how many records at most.
    states: frozenset[RemediationState] = frozenset()
    modes: frozenset[RemediationMode] = frozenset()
    triggers: frozenset[RemediationTrigger] = frozenset()
    order: Order = DEFAULT_ORDER
    # Called ``before`` when lists were newest first only: still read so (replayed inbox).
    after: Cursor | None = Field(default=None, validation_alias=AliasChoices("after", "before"))
    limit: int = Field(default=50, ge=1, le=1001)
    # AUDIT only: the call in short.
    audit: AuditNote | None = None


@dataclass(frozen=True, slots=True)
class Handled:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    reply: Reply
    #: Policy events the command caused (APPROVAL_RECORDED).
    events: tuple[PolicyEvent, ...] = ()


_MOVES = {
    CommandKind.APPROVE: Event.APPROVE,
    CommandKind.REJECT: Event.REJECT,
    CommandKind.CANCEL: Event.CANCEL,
}


def all_remediations(
    state: InstanceState, archived: Archived = _nothing_archived
) -> list[Remediation]:
    """The instance's remediations, open first, then closed newest first."""
    records = [state.open.remediation] if state.open is not None else []
    return records + list(archived())


def find(
    state: InstanceState, remediation_id: str, archived: Archived = _nothing_archived
) -> Remediation | None:
    if state.open is not None and state.open.remediation.id == remediation_id:
        return state.open.remediation
    return next((r for r in archived() if r.id == remediation_id), None)


def handle(
    state: InstanceState | None,
    command: Command,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    archived: Archived = _nothing_archived,
    decisions: Callable[[], Sequence[DecisionRecord]] = tuple,
    queue_place: Callable[[], tuple[int, int] | None] = lambda: None,
) -> Handled:
    """Apply one API command to one instance. Pure; see the module docstring.

    ``archived`` and ``decisions`` read the instance's closed remediations and its
    decision log, which live outside the hot record; ``queue_place`` the instance's
    place in its cluster's admission queue (place, length), if it waits there.
    """
    if state is None:
        state = InstanceState.empty(command.cluster_id, command.instance_id)
    if command.kind is CommandKind.AUDIT:
        return Handled(_noted(state, command.audit), (), Reply(command_id=command.command_id))
    if command.kind in _POLICY_COMMANDS:
        # Idempotent by nature (a replay sets the same thing): nothing to remember.
        if command.kind is CommandKind.OPT_OUT:
            opt_out = OptOut(reason=command.reason or "", by=command.principal, at=now)
            # Opted out, the instance leaves the admission queue too.
            state = state.model_copy(update={"opt_out": opt_out, "waiting": None})
        elif command.kind is CommandKind.OPT_IN:
            state = state.model_copy(update={"opt_out": None})
        elif command.kind is CommandKind.LIFT_HOLD:
            lifted = OptOut(reason=command.reason or "", by=command.principal, at=now)
            state = state.model_copy(update={"hold_lifted": lifted, "held_for_human_at": None})
        place = queue_place() if state.waiting is not None else None
        explanation = explain(state, policy, decisions(), archived(), place)
        return Handled(state, (), Reply(command_id=command.command_id, explanation=explanation))
    remembered = state.replies.get(command.command_id)
    if remembered is not None:
        return Handled(state, (), _recall(state, command, remembered, archived))

    if command.kind is CommandKind.GET:
        return Handled(state, (), _get(state, command, archived))
    if command.kind is CommandKind.LIST:
        return Handled(state, (), list_reply(command, all_remediations(state, archived)))
    if command.kind is CommandKind.CREATE:
        new_state, transitions, reply = _create(state, command, now, archived, policy)
    else:
        new_state, transitions, reply = _move(state, command, now, archived, policy)
    return Handled(_remember(new_state, reply), transitions, reply, _recorded(transitions))


_POLICY_COMMANDS = frozenset(
    {CommandKind.OPT_OUT, CommandKind.OPT_IN, CommandKind.EXPLAIN, CommandKind.LIFT_HOLD}
)


def explain(
    state: InstanceState,
    policy: Policy = DEFAULT_POLICY,
    decisions: Sequence[DecisionRecord] = (),
    archived: Sequence[Remediation] = (),
    place: tuple[int, int] | None = None,
) -> Explanation:
    """What ``GET …/instances/{id}/explain`` answers (see :class:`Explanation`)."""
    last = state.past[0] if state.past else None
    ended = state.cooldown_from or (last.end_time if last is not None else None)
    cooldown_until = ended + policy.cooldown if ended is not None and policy.cooldown else None
    return Explanation(
        cluster_id=state.cluster_id,
        instance_id=state.instance_id,
        opt_out=state.opt_out,
        open_remediation=state.open.remediation if state.open is not None else None,
        cooldown_until=cooldown_until,
        debounce={rule: len(times) for rule, times in state.strikes.items()},
        decisions=list(decisions),
        recent=fit_page(archived[:10], MAX_RECENT_BYTES)[0],
        last_signal_at=state.watermark,
        held_for_human_at=state.held_for_human_at,
        hold_lifted=state.hold_lifted,
        verification=state.verification,
        queued=_queued(state, place),
        audit=list(state.audit),
    )


def _queued(state: InstanceState, place: tuple[int, int] | None) -> QueuedProposal | None:
    waiting = state.waiting
    if waiting is None:
        return None
    where, length = place or (1, 1)
    return QueuedProposal(
        remediation_id=waiting.remediation.id,
        mode=waiting.remediation.mode,
        rule=waiting.remediation.rule,
        since=waiting.since,
        blocked=waiting.blocked,
        reason=waiting.reason,
        place=where,
        of=length,
    )


def _error(command: Command, code: ErrorCode, message: str) -> Reply:
    return Reply(command_id=command.command_id, error_code=code, error_message=message)


def _get(state: InstanceState, command: Command, archived: Archived) -> Reply:
    record = find(state, command.remediation_id or "", archived)
    if record is None:
        return _not_found(command)
    return Reply(command_id=command.command_id, remediation=record)


def _not_found(command: Command) -> Reply:
    return _error(
        command,
        ErrorCode.NOT_FOUND,
        f"remediation {command.remediation_id!r} not found on instance "
        f"{command.cluster_id}/{command.instance_id}",
    )


Outcome = tuple[InstanceState, tuple[RemediationTransition, ...], Reply]


def _create(
    state: InstanceState, command: Command, now: datetime, archived: Archived, policy: Policy
) -> Outcome:
    remediation_id = command.remediation_id or command.command_id
    mode = command.mode or RemediationMode.VM_ONLY
    existing = find(state, remediation_id, archived)
    if existing is not None:
        if existing.trigger is RemediationTrigger.MANUAL and existing.mode is mode:
            return state, (), Reply(command_id=command.command_id, remediation=existing)
        message = (
            f"remediation_id {remediation_id!r} is already used by a remediation with "
            "different content"
        )
        return state, (), _error(command, ErrorCode.ALREADY_EXISTS, message)
    if state.open is not None:
        current = state.open.remediation
        message = (
            f"instance {command.cluster_id}/{command.instance_id} already has open "
            f"remediation {current.id} in state {current.state.value}"
        )
        return state, (), _error(command, ErrorCode.FAILED_PRECONDITION, message)
    # Two-person approval of manual creates, if the policy asks: the requester's own
    # approval is the first, a second person's moves it on.
    second_needed = policy.two_person_manual and policy.needs_two(command.cluster_id, mode)
    remediation = _manual(remediation_id, command, mode, now, second_needed)
    reason = command.reason or "created through the API"
    if second_needed:
        reason += f"; {mode.value} needs a second person's approval"
    new_state, transition = record_creation(
        # A remediation by hand takes the place of a proposal waiting for room.
        state.model_copy(update={"waiting": None}),
        remediation,
        Event.CREATE_MANUAL_FOR_APPROVAL if second_needed else Event.CREATE_MANUAL,
        now=now,
        actor=command.principal,
        reason=reason,
    )
    reply = Reply(command_id=command.command_id, remediation=remediation, created=True)
    return new_state, (transition,), reply


def _manual(
    remediation_id: str,
    command: Command,
    mode: RemediationMode,
    now: datetime,
    second_needed: bool,
) -> Remediation:
    """A remediation created through the API: PENDING, or waiting for a second person."""
    first = Approval(principal=command.principal, at=now, mode=mode, comment=command.reason)
    return Remediation(
        id=remediation_id,
        cluster_id=command.cluster_id,
        instance_id=command.instance_id,
        mode=mode,
        trigger=RemediationTrigger.MANUAL,
        state=RemediationState.PENDING_APPROVAL if second_needed else RemediationState.PENDING,
        reason=command.reason,
        requested_by=command.principal,
        create_time=now,
        update_time=now,
        approvals_required=2 if second_needed else None,
        approvals=[first] if second_needed else [],
    )


#: The provider's words (SDK 3.1.1) on why a power cycle is no approval override.
POWER_CYCLE_OVERRIDE = (
    "REMEDIATION_MODE_HOST_POWER_CYCLE cannot be set as an approval override; create a "
    "host power-cycle remediation directly"
)


def _move(
    state: InstanceState, command: Command, now: datetime, archived: Archived, policy: Policy
) -> Outcome:
    event = _MOVES[command.kind]
    if command.kind is CommandKind.APPROVE and command.mode is RemediationMode.HOST_POWER_CYCLE:
        return state, (), _error(command, ErrorCode.INVALID_ARGUMENT, POWER_CYCLE_OVERRIDE)
    record = find(state, command.remediation_id or "", archived)
    if record is None:
        return state, (), _not_found(command)
    if (
        command.kind is CommandKind.APPROVE
        and record.state is RemediationState.PENDING_APPROVAL
        and policy.needs_two(record.cluster_id, command.mode or record.mode)
    ):
        return _approve_by_two(state, record, command, now)
    changes: dict[str, object] = {}
    if command.kind in (CommandKind.APPROVE, CommandKind.REJECT):
        changes = {
            "reviewed_by": command.principal,
            "review_time": now,
            "review_comment": command.comment,
        }
    if command.kind is CommandKind.APPROVE and command.mode is not None:
        changes["mode"] = command.mode
    try:
        new_state, transition = record_change(
            state,
            record,
            event,
            now=now,
            actor=command.principal,
            reason=_reason(command),
            changes=changes,
        )
    except IllegalTransition:
        return (
            state,
            (),
            _error(
                command,
                ErrorCode.FAILED_PRECONDITION,
                f"cannot {command.kind.value.lower()} remediation {record.id}: it is "
                f"{record.state.value}",
            ),
        )
    reply = Reply(command_id=command.command_id, remediation=transition.remediation)
    return new_state, (transition,), reply


def _approve_by_two(
    state: InstanceState, record: Remediation, command: Command, now: datetime
) -> Outcome:
    """An approval of a mode that needs two different people: the first is recorded (the
    remediation keeps waiting), the second, by someone else, approves it."""
    mode = command.mode or record.mode
    # Approvals of another mode (an override the second person did not repeat) do not count.
    earlier = [a for a in record.approvals if a.mode is mode]
    if any(a.principal == command.principal for a in earlier):
        return (
            state,
            (),
            _error(
                command,
                ErrorCode.FAILED_PRECONDITION,
                f"{command.principal} has already approved remediation {record.id} "
                f"({mode.value}): a second, different person must approve it",
            ),
        )
    approval = Approval(principal=command.principal, at=now, mode=mode, comment=command.comment)
    changes: dict[str, object] = {"approvals": [*earlier, approval], "approvals_required": 2}
    if earlier:
        event, reason = (
            Event.APPROVE,
            _reason(command) + f" (second approval, after {earlier[0].principal})",
        )
        changes |= {
            "reviewed_by": command.principal,
            "review_time": now,
            "review_comment": command.comment,
        }
        if command.mode is not None:
            changes["mode"] = command.mode
    else:
        event = Event.RECORD_APPROVAL
        reason = (
            f"approval 1 of 2 recorded by {command.principal} ({mode.value}): a second, "
            "different person must approve" + (f": {command.comment}" if command.comment else "")
        )
    new_state, transition = record_change(
        state, record, event, now=now, actor=command.principal, reason=reason, changes=changes
    )
    reply = Reply(command_id=command.command_id, remediation=transition.remediation)
    return new_state, (transition,), reply


def _recorded(transitions: Sequence[RemediationTransition]) -> tuple[PolicyEvent, ...]:
    """An APPROVAL_RECORDED policy event for each first of two approvals: alerting may
    page the second approver."""
    return tuple(
        PolicyEvent.of(
            PolicyEventKind.APPROVAL_RECORDED,
            t.remediation.cluster_id,
            t.remediation.instance_id,
            cause=t.transition_id,
            rule=t.remediation.rule,
            mode=t.remediation.approvals[-1].mode,
            reason=t.reason,
            at=t.occurred_at,
        )
        for t in transitions
        if t.event in (Event.RECORD_APPROVAL.value, Event.CREATE_MANUAL_FOR_APPROVAL.value)
    )


def _noted(state: InstanceState, note: AuditNote | None) -> InstanceState:
    """The instance with ``note`` as its newest API call (the oldest beyond the bound go)."""
    if note is None or note in state.audit:  # told twice (a replay): kept once
        return state
    notes = sorted([*state.audit, note], key=lambda n: n.at)[-MAX_AUDIT_NOTES:]
    return state.model_copy(update={"audit": notes})


def _reason(command: Command) -> str:
    verb = {"APPROVE": "approved", "REJECT": "rejected", "CANCEL": "cancelled"}[command.kind.value]
    text = f"{verb} by {command.principal}"
    if command.kind is CommandKind.APPROVE and command.mode is not None:
        text += f" with mode {command.mode.value}"
    if command.comment:
        text += f": {command.comment}"
    return text


def _remember(state: InstanceState, reply: Reply) -> InstanceState:
    replies = dict(state.replies)
    replies[reply.command_id] = RememberedReply(
        remediation_id=reply.remediation.id if reply.remediation is not None else None,
        created=reply.created,
        error_code=reply.error_code,
        error_message=reply.error_message,
    )
    for key in list(replies)[: max(len(replies) - MAX_REMEMBERED_REPLIES, 0)]:
        del replies[key]  # oldest first: dicts keep insertion order
    return state.model_copy(update={"replies": replies})


def _recall(
    state: InstanceState, command: Command, remembered: RememberedReply, archived: Archived
) -> Reply:
    rid = remembered.remediation_id
    record = find(state, rid, archived) if rid else None
    return Reply(
        command_id=command.command_id,
        remediation=record,
        created=remembered.created,
        error_code=remembered.error_code,
        error_message=remembered.error_message,
    )


class Claim(BaseModel):
    """Which instance and mode a client-specified ``remediation_id`` was first used for."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    remediation_id: str
    cluster_id: str
    instance_id: str
    mode: RemediationMode


def claim(existing: Claim | None, command: Command) -> tuple[Claim, Reply | None]:
    """Reserve a CREATE's ``remediation_id`` across all instances.

    Returns the claim to keep and, when the id already belongs to another target or mode,
    the ``ALREADY_EXISTS`` reply (the command then goes no further). Otherwise the command
    goes on to its instance, which answers it.
    """
    wanted = Claim(
        remediation_id=command.remediation_id or command.command_id,
        cluster_id=command.cluster_id,
        instance_id=command.instance_id,
        mode=command.mode or RemediationMode.VM_ONLY,
    )
    if existing is None or existing == wanted:
        return wanted, None
    return existing, _error(
        command,
        ErrorCode.ALREADY_EXISTS,
        f"remediation_id {wanted.remediation_id!r} was already used for "
        f"{existing.cluster_id}/{existing.instance_id} with mode {existing.mode.value}",
    )
