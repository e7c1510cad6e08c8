"""The remediation lifecycle (its states and allowed moves) as a data table applied by one function.

Rules kept here:
- :data:`TRANSITIONS` is the whole lifecycle: ``(from_state, event) -> to_state``. A move
  not in the table raises :class:`IllegalTransition` and the record is left unchanged
  (records are frozen; :func:`apply` returns a new one).
- ``AUTO_RESOLVE`` applies to automated remediations only.
- ``ATTACH_SIGNAL`` (and ``LINK_ALERT``) update an open remediation without moving it;
  they are refused on a terminal one. ``STEP_STARTED`` / ``STEP_DONE`` likewise record
  the executor's progress on one being carried out.
- The modes that cordon the host first (HOST_AWARE, HOST_POWER_CYCLE) start with
  ``QUARANTINE`` (PENDING -> QUARANTINING), become QUARANTINED when the cordon is done,
  and RUNNING when their next step starts. Neither state can be cancelled.
- Bookkeeping is done here and nowhere else: ``update_time`` on every change,
  ``start_time`` on start, ``end_time`` on reaching a terminal state.

No I/O and no clock: ``now`` is an argument.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .models import Remediation, RemediationState, RemediationTrigger

S = RemediationState


class Event(enum.StrEnum):
    CREATE_AUTOMATED = "CREATE_AUTOMATED"
    CREATE_MANUAL = "CREATE_MANUAL"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    AUTO_RESOLVE = "AUTO_RESOLVE"
    START = "START"
    QUARANTINE = "QUARANTINE"  # start of a cordoning mode: the cordon step comes first
    QUARANTINED = "QUARANTINED"  # the cordon step is done
    SUCCEED = "SUCCEED"
    FAIL = "FAIL"
    ATTACH_SIGNAL = "ATTACH_SIGNAL"
    STEP_STARTED = "STEP_STARTED"
    STEP_DONE = "STEP_DONE"
    UPGRADE_MODE = "UPGRADE_MODE"
    LINK_ALERT = "LINK_ALERT"  # a passive alert linked (or resolved) on the open record
    EXPIRE = "EXPIRE"  # a recommendation not approved within its approval TTL
    # Two-person approval: a manual create that needs a second person, and a first
    # approval (recorded; the remediation keeps waiting for the second).
    CREATE_MANUAL_FOR_APPROVAL = "CREATE_MANUAL_FOR_APPROVAL"
    RECORD_APPROVAL = "RECORD_APPROVAL"


_OPEN_STATES = (S.PENDING_APPROVAL, S.PENDING, S.QUARANTINING, S.QUARANTINED, S.RUNNING)

TRANSITIONS: Mapping[tuple[RemediationState | None, Event], RemediationState] = {
    (None, Event.CREATE_AUTOMATED): S.PENDING_APPROVAL,
    (None, Event.CREATE_MANUAL): S.PENDING,
    (None, Event.CREATE_MANUAL_FOR_APPROVAL): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, Event.RECORD_APPROVAL): S.PENDING_APPROVAL,
    (S.PENDING_APPROVAL, Event.APPROVE): S.PENDING,
    (S.PENDING_APPROVAL, Event.REJECT): S.CANCELLED,
    (S.PENDING_APPROVAL, Event.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, Event.EXPIRE): S.CANCELLED,
    (S.PENDING, Event.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, Event.AUTO_RESOLVE): S.AUTO_RESOLVED,
    (S.PENDING, Event.AUTO_RESOLVE): S.AUTO_RESOLVED,
    (S.PENDING, Event.START): S.RUNNING,
    (S.PENDING, Event.QUARANTINE): S.QUARANTINING,
    (S.QUARANTINING, Event.QUARANTINED): S.QUARANTINED,
    (S.RUNNING, Event.SUCCEED): S.SUCCEEDED,
    (S.RUNNING, Event.FAIL): S.FAILED,
    (S.QUARANTINING, Event.FAIL): S.FAILED,
    (S.QUARANTINED, Event.FAIL): S.FAILED,
    **{(state, Event.ATTACH_SIGNAL): state for state in _OPEN_STATES},
    **{(state, Event.LINK_ALERT): state for state in _OPEN_STATES},
    # Progress of the executor's steps: the record changes, the state does not, except
    # that the step after the cordon takes a quarantined host on to RUNNING.
    (S.QUARANTINING, Event.STEP_STARTED): S.QUARANTINING,
    (S.QUARANTINED, Event.STEP_STARTED): S.RUNNING,
    (S.RUNNING, Event.STEP_STARTED): S.RUNNING,
    (S.RUNNING, Event.STEP_DONE): S.RUNNING,
    # A worse signal raises the mode of an automated remediation that has not started.
    (S.PENDING_APPROVAL, Event.UPGRADE_MODE): S.PENDING_APPROVAL,
    (S.PENDING, Event.UPGRADE_MODE): S.PENDING,
}


class IllegalTransition(Exception):
    """A lifecycle move that the contract does not allow; nothing was changed."""

    def __init__(self, from_state: RemediationState | None, event: Event, detail: str = "") -> None:
        self.from_state = from_state
        self.event = event
        where = from_state.value if from_state is not None else "(new)"
        message = f"{event.value} is not allowed from {where}"
        super().__init__(f"{message}: {detail}" if detail else message)


def next_state(from_state: RemediationState | None, event: Event) -> RemediationState:
    """The state ``event`` leads to from ``from_state``; raises :class:`IllegalTransition`."""
    try:
        return TRANSITIONS[(from_state, event)]
    except KeyError:
        raise IllegalTransition(from_state, event) from None


_CREATIONS = (Event.CREATE_AUTOMATED, Event.CREATE_MANUAL, Event.CREATE_MANUAL_FOR_APPROVAL)


def apply(
    remediation: Remediation,
    event: Event,
    *,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
) -> Remediation:
    """Return ``remediation`` after ``event`` at ``now``, with ``changes`` merged in.

    Raises :class:`IllegalTransition` (and changes nothing) when the move is not in
    :data:`TRANSITIONS`. Creation is not an ``apply``: see :func:`create`.
    """
    if event in _CREATIONS:
        raise IllegalTransition(remediation.state, event, "the remediation already exists")
    to_state = next_state(remediation.state, event)
    if event is Event.AUTO_RESOLVE and remediation.trigger is not RemediationTrigger.AUTOMATED:
        raise IllegalTransition(
            remediation.state, event, "only automated remediations auto-resolve"
        )
    update: dict[str, Any] = dict(changes or {})
    update["state"] = to_state
    update["update_time"] = now
    if event in (Event.START, Event.QUARANTINE):
        update["start_time"] = now
    if to_state.is_terminal:
        update["end_time"] = now
    return remediation.model_copy(update=update)


def create(remediation: Remediation, event: Event) -> Remediation:
    """Check that a new record starts in the state ``event`` creates; return it.

    Raises :class:`IllegalTransition` when the record's state or trigger does not match
    the creation event.
    """
    expected = next_state(None, event)
    expected_trigger = (
        RemediationTrigger.AUTOMATED
        if event is Event.CREATE_AUTOMATED
        else RemediationTrigger.MANUAL
    )
    if remediation.state is not expected or remediation.trigger is not expected_trigger:
        raise IllegalTransition(
            None,
            event,
            f"a new record must be {expected_trigger.value} in {expected.value}",
        )
    return remediation
