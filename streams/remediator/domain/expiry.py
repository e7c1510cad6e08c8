"""Approval expiry: a recommendation nobody approved in time is cancelled.

An automated remediation waits in PENDING_APPROVAL for a human. One that waited longer
than its rule's ``approval_ttl_hours`` (default 24) is about a problem that may have
changed since; approving it days late would act on stale evidence, and the queue of
waiting recommendations would only grow. So it is cancelled with the reason "approval
expired", a transition and an ``APPROVAL_EXPIRED`` policy event; the next failing signal
opens a fresh one if the problem is still there.

Decided on the cluster's event time (the newest signal seen), like every other rule, and
counted from the event time of the signal that opened it (a proposal that waited in the
admission queue counts its wait too), so a replay or a backlog decides the same; the
ids of the transition and the event derive from the remediation's, so doing it again
after a crash re-publishes the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .lifecycle import Event
from .models import (
    PolicyEvent,
    PolicyEventKind,
    Remediation,
    RemediationState,
    RemediationTransition,
    RemediationTrigger,
)
from .opening import SYSTEM_PRINCIPAL
from .policy import Policy
from .state import InstanceState, record_change


@dataclass(frozen=True, slots=True)
class Expired:
    state: InstanceState
    transition: RemediationTransition
    event: PolicyEvent


def awaiting_approval(state: InstanceState | None) -> bool:
    """An automated remediation waiting for a human (what may expire)."""
    return (
        state is not None
        and state.open is not None
        and state.open.remediation.state is RemediationState.PENDING_APPROVAL
        and state.open.remediation.trigger is RemediationTrigger.AUTOMATED
    )


def opened_at(remediation: Remediation) -> datetime:
    """When the recommendation opened, on the clock expiry is decided on (event time):
    the event time of the signal that opened it. Its ``create_time`` is the input's
    record time, which a backlog or a replay of old signals puts days after it."""
    return remediation.signals[0].observed_at if remediation.signals else remediation.create_time


def deadline(state: InstanceState, policy: Policy) -> datetime | None:
    """When the instance's recommendation expires, if it waits for approval and its rule
    has a TTL."""
    if not awaiting_approval(state) or state.open is None:
        return None
    remediation = state.open.remediation
    ttl = policy.approval_ttl(remediation.rule)
    return None if ttl is None else opened_at(remediation) + ttl


def expire(state: InstanceState, policy: Policy, clock: datetime) -> Expired | None:
    """Cancel the instance's recommendation if it waited past its TTL at ``clock``."""
    due = deadline(state, policy)
    if due is None or clock < due or state.open is None:
        return None
    remediation = state.open.remediation
    ttl = policy.approval_ttl(remediation.rule)
    assert ttl is not None  # noqa: S101 - a deadline implies a TTL
    hours = ttl.total_seconds() / 3600
    reason = f"approval expired: not approved within {hours:g} h"
    when = opened_at(remediation) + ttl
    state, transition = record_change(
        state, remediation, Event.EXPIRE, now=when, actor=SYSTEM_PRINCIPAL, reason=reason
    )
    event = PolicyEvent.of(
        PolicyEventKind.APPROVAL_EXPIRED,
        state.cluster_id,
        state.instance_id,
        cause=remediation.id,
        rule=remediation.rule,
        mode=remediation.mode,
        reason=f"{reason} (remediation {remediation.id})",
        at=when,
    )
    return Expired(state, transition, event)
