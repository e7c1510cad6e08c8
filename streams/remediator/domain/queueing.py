"""Queued admission: proposals the cluster refused for lack of room wait for it.

A failing signal whose remediation the cluster refuses because its blast radius is
tripped or its hourly budget is spent is not dropped (in 0.1 it was, and the instance
stayed broken until a new signal happened to arrive: Alertmanager repeats a firing alert
only every few hours). It waits in the cluster's queue, kept in the instance's own hot
record (:class:`~remediator.domain.state.WaitingProposal`) so it recovers, moves and
replays with everything else about the instance:

- first come, first opened: a place is the event time it first queued; while proposals
  wait, a new one waits behind them even if there is room (``safety.admit``);
- one per instance: the instance's newest failing signal replaces its proposal (mode,
  rule, evidence) and keeps its place;
- bounded: at most ``admission_queue_max`` per cluster; beyond, a refusal is dropped as
  before, and the decision says so;
- admitted as soon as there is room (the pipeline asks whenever the cluster's counts or
  clock change): opened with its transition(s) and a ``QUEUE_ADMITTED`` policy event;
  when the first in line waits only for its failure domain (a full rack), those behind
  it in other domains go first;
- held while a change freeze holds (reason ``freeze``: :mod:`freeze`), and opened as
  soon as it ends, within the blast radius and budget;
- dropped when its problem clears (the test that failed passes, the alert resolves) or
  the instance is opted out or gets a remediation by hand.

Everything here is pure and decided on event time, with ids derived from what caused
it, so a replay or a new owner of the cluster re-decides the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from . import safety, topology
from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    HealthSignal,
    PolicyEvent,
    PolicyEventKind,
    Remediation,
    RemediationTransition,
    SignalKind,
    format_timestamp,
)
from .opening import open_automated
from .policy import Policy
from .safety import Admission, ClusterView, Proposal
from .state import InstanceState, WaitingProposal


def enqueue(
    state: InstanceState,
    remediation: Callable[[], Remediation],
    admission: Admission,
    view: ClusterView,
    policy: Policy,
    at: datetime,
) -> tuple[InstanceState, str]:
    """Put the refused proposal in the queue (or replace the instance's one, keeping its
    place). Returns the new state and what the decision should say. ``remediation``
    builds what would open: only called when the proposal is queued (in a storm most
    are refused once the queue is full, and building one is most of a refusal's cost)."""
    waiting = state.waiting
    if waiting is None and view.waiting >= policy.admission_queue_max:
        if not policy.admission_queue_max:
            return state, admission.reason
        return state, (
            f"{admission.reason}; not queued: {view.waiting} proposal(s) already wait, "
            f"admission_queue_max {policy.admission_queue_max}"
        )
    since = waiting.since if waiting is not None else at
    blocked = admission.blocked.value if admission.blocked is not None else ""
    proposal = WaitingProposal(
        remediation=remediation(), since=since, at=at, blocked=blocked, reason=admission.reason
    )
    state = state.model_copy(update={"waiting": proposal})
    return state, f"{admission.reason}; queued since {format_timestamp(since)}"


def clears(waiting: WaitingProposal, signal: HealthSignal, at: datetime) -> bool:
    """Whether a healthy ``signal`` clears the problem the waiting proposal is about:
    its opening test passed, or its opening alert resolved, at or after the failure."""
    if not waiting.remediation.signals:
        return False
    opener = waiting.remediation.signals[0]
    if isinstance(signal, ActiveHealthCheckRun):
        same = opener.kind is SignalKind.ACTIVE_RUN and opener.name == signal.test
        healthy = signal.result is ActiveTestResult.PASSED
    else:
        same = opener.kind is SignalKind.PASSIVE_EVENT and opener.name == signal.alert_name
        healthy = signal.status is AlertStatus.RESOLVED
    return same and healthy and at >= opener.observed_at


def drop(state: InstanceState) -> InstanceState:
    return state if state.waiting is None else state.model_copy(update={"waiting": None})


@dataclass(frozen=True, slots=True)
class Admitted:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    event: PolicyEvent


@dataclass(frozen=True, slots=True)
class NoRoom:
    """Why the waiting proposal cannot open yet."""

    #: Only its failure domain is full: proposals behind it, in other domains, may open.
    domain_only: bool


def _domain_only(admission: Admission, policy: Policy, cluster_id: str, clock: datetime) -> bool:
    """Whether only the instance's failure domain keeps it waiting: its domain is full,
    or a freeze holds its domain but not the whole cluster."""
    if admission.blocked is safety.BlockReason.DOMAIN:
        return True
    return (
        admission.blocked is safety.BlockReason.FREEZE
        and policy.freezes.first(cluster_id, clock, None) is None
    )


def try_admit(
    state: InstanceState, view: ClusterView, policy: Policy, clock: datetime, now: datetime
) -> Admitted | NoRoom:
    """Open the instance's waiting proposal if the cluster has room at event time
    ``clock`` (``now`` stamps what opens). ``view`` is the cluster as this instance
    asks (``ClusterModel.view(instance)``)."""
    waiting = state.waiting
    if waiting is None or state.open is not None or state.opt_out is not None:
        return NoRoom(domain_only=True)  # nothing to open here; look further
    record = waiting.remediation
    proposal = Proposal(
        cluster_id=state.cluster_id,
        instance_id=state.instance_id,
        remediation_id=record.id,
        rule=record.rule,
        mode=record.mode,
        at=clock,
        domains=topology.names(state.domain),
    )
    admission = safety.admit(view, proposal, policy, now, queued=True)
    if not admission.admitted:
        return NoRoom(domain_only=_domain_only(admission, policy, state.cluster_id, clock))
    waited = f"waited since {format_timestamp(waiting.since)} ({waiting.blocked})"
    remediation = record.model_copy(
        update={"create_time": now, "update_time": now, "reason": f"{record.reason}; {waited}"}
    )
    opened, transitions = open_automated(drop(state).admit(clock), remediation, policy, now)
    event = PolicyEvent.of(
        PolicyEventKind.QUEUE_ADMITTED,
        state.cluster_id,
        state.instance_id,
        cause=record.id,
        rule=record.rule,
        mode=record.mode,
        reason=f"opened {record.id} from the cluster's queue: {waited}; {admission.reason}",
        at=now,
    )
    return Admitted(opened, transitions, event)
