"""Cluster-wide safety: the blast-radius limit, the rate budget and the operator's pause.

"How many of this cluster's instances are already being remediated" needs one place that
sees the whole cluster. All of a cluster's instances live on one partition (the pipeline
partitions everything by cluster), so the owner of that partition decides admissions
locally and at once, from a :class:`ClusterView`:

- the counts (known instances, unhealthy ones, recent admissions) are *derived* from the
  instances' own records, so they can never drift from them, whatever a crash left
  half-written;
- what cannot be derived, the pause and whether the blast radius is tripped
  (hysteresis), is the :class:`ClusterRecord`, one value per cluster.

Rules, in order: a paused cluster admits nothing; a tripped cluster admits nothing until
the unhealthy count falls to the lower mark, which resumes it (:func:`reconcile`); a
proposal that would go past the limit trips it; the same, per failure domain (a rack, a
leaf switch: :mod:`topology`), for the instances of a domain only; the hourly budget
(event time) refuses beyond it; and while earlier refused proposals wait in the
cluster's queue, a new one waits behind them (first come, first opened: see
``domain/queueing.py``). Tripping, resuming, pausing and resuming from a pause are
:class:`PolicyEvent` values for alerting, with ids derived from what caused them, so a
replay re-publishes the same ids. Manual remediations never come here: an operator can
always act.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from . import topology
from .models import (
    PolicyEvent,
    PolicyEventKind,
    RemediationMode,
    StoredIdentifier,
    Timestamp,
    format_timestamp,
)
from .policy import Policy

BUDGET_WINDOW = timedelta(hours=1)


class Pause(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    by: str
    at: Timestamp


class ClusterRecord(BaseModel):
    """The part of a cluster's safety state that its instances' records cannot tell."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_id: StoredIdentifier
    paused: Pause | None = None
    tripped_at: Timestamp | None = Field(
        default=None, description="When the blast-radius limit tripped; None: not tripped."
    )
    budget_exhausted_at: Timestamp | None = Field(
        default=None,
        description="When the hourly budget first refused a proposal; None: it has room.",
    )
    tripped_domains: dict[str, Timestamp] = Field(
        default_factory=dict,
        description='Failure domain (e.g. "rack=r12") -> when its own blast-radius limit '
        "tripped; a domain not listed is not tripped.",
    )
    freezes: dict[str, Timestamp] = Field(
        default_factory=dict,
        description="Change freeze (its policy name) -> the start of the window noticed as "
        "holding (a FREEZE_STARTED event was published; FREEZE_ENDED when it goes).",
    )


@dataclass(frozen=True, slots=True)
class ClusterView:
    """A cluster as admission sees it at one moment."""

    record: ClusterRecord
    #: Instances of the cluster the service has seen (any signal, any command).
    known: int
    #: Instances with an open automated remediation ("in progress counts as unhealthy").
    unhealthy: int
    #: Event times of automated admissions still remembered, oldest first (the budget).
    admissions: Sequence[datetime] = ()
    #: The newest event time seen in the cluster: the clock the budget is counted on.
    latest: datetime | None = None
    #: Proposals waiting in the cluster's admission queue for room in the cluster (the
    #: asking instance's not counted): a new proposal waits behind them. Those waiting
    #: only for their failure domain hold nobody else back.
    waiting: int = 0
    #: Failure domain ("rack=r12") -> its known instances / its unhealthy ones.
    domain_known: Mapping[str, int] = field(default_factory=dict)
    domain_unhealthy: Mapping[str, int] = field(default_factory=dict)
    #: The domains the asking instance is already counted in (as of its last signal).
    asking_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    """An instance's automated remediation, asking to be opened."""

    cluster_id: str
    instance_id: str
    remediation_id: str
    rule: str | None
    mode: RemediationMode
    at: datetime  # event time of the signal behind it
    #: The failure domains the instance is in (``topology.names``); none: not limited by one.
    domains: tuple[str, ...] = ()


class BlockReason(enum.StrEnum):
    """Why a remediation the policy wanted was not opened, in one word: the reason text
    carries the detail, this a bounded label (metrics, dashboards) that never needs parsing.
    """

    PAUSED = "paused"  # an operator paused the cluster
    BLAST_RADIUS = "blast_radius"  # the cluster's limit tripped now or earlier
    RATE_BUDGET = "rate_budget"  # the cluster's hourly budget is spent
    OPT_OUT = "opt_out"  # the instance is opted out
    COOLDOWN = "cooldown"  # the instance's last remediation ended too recently
    HELD_FOR_HUMAN = "held_for_human"  # too many remediations of the instance lately
    QUEUED = "queued"  # earlier refused proposals of the cluster wait for room first
    DOMAIN = "domain_blast_radius"  # the instance's failure domain (rack, leaf) is full
    FREEZE = "freeze"  # a change freeze holds the cluster (or the instance's domain)


#: Refusals for lack of room: such a proposal waits in the cluster's queue.
QUEUEABLE = frozenset(
    {
        BlockReason.BLAST_RADIUS,
        BlockReason.DOMAIN,
        BlockReason.RATE_BUDGET,
        BlockReason.QUEUED,
        BlockReason.FREEZE,
    }
)


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    reason: str
    record: ClusterRecord
    events: tuple[PolicyEvent, ...] = ()
    #: Why it was refused (None when admitted).
    blocked: BlockReason | None = None


def admit(
    view: ClusterView, proposal: Proposal, policy: Policy, now: datetime, *, queued: bool = False
) -> Admission:
    """Admit or refuse one proposal; see the module docstring. The checks, in order:
    a pause, a change freeze, the cluster's blast radius, its failure domains, the hourly
    budget, and the proposals already waiting in line.

    ``queued``: the proposal at the head of the cluster's queue, asking again because
    there may be room now. It does not wait behind itself, and it does not trip the
    blast radius (it was counted when it was first refused: no room is no news).
    """
    record, events = reconcile(view, policy, now)
    if record.paused is not None:
        pause = record.paused
        reason = f"cluster paused by {pause.by}: {pause.reason}"
        return Admission(False, reason, record, events, BlockReason.PAUSED)
    clock = max(proposal.at, view.latest) if view.latest is not None else proposal.at
    frozen = policy.freezes.first(proposal.cluster_id, clock, proposal.domains)
    if frozen is not None:
        return Admission(False, frozen.describe(), record, events, BlockReason.FREEZE)
    refused = (
        _radius_check(view, proposal, policy, record, events, now, queued)
        or _domain_check(view, proposal, policy, record, events, now, queued)
        or _budget_check(view, proposal, policy, record, events, now)
    )
    if refused is not None:
        return refused
    if view.waiting and not queued:
        reason = f"{view.waiting} earlier proposal(s) of the cluster wait for room first"
        return Admission(False, reason, record, events, BlockReason.QUEUED)
    limit = policy.blast_radius.limit(view.known)
    return Admission(True, f"admitted: {view.unhealthy + 1} of limit {limit}", record, events)


def _radius_check(
    view: ClusterView,
    proposal: Proposal,
    policy: Policy,
    record: ClusterRecord,
    events: tuple[PolicyEvent, ...],
    now: datetime,
    queued: bool,
) -> Admission | None:
    """The cluster's storm limit: refused while tripped; one more than the limit trips it
    (edge-triggered: one BLAST_RADIUS_TRIPPED event)."""
    radius = policy.blast_radius
    limit = radius.limit(view.known)
    if record.tripped_at is not None:
        return Admission(
            False,
            f"blast radius: {view.unhealthy} of {view.known} instances unhealthy, tripped at "
            f"{limit}; resumes at {radius.resume_at(view.known)} or fewer",
            record,
            events,
            BlockReason.BLAST_RADIUS,
        )
    if view.unhealthy + 1 <= limit:
        return None
    if queued:
        reason = f"blast radius: {view.unhealthy} of limit {limit} open"
        return Admission(False, reason, record, events, BlockReason.BLAST_RADIUS)
    record = record.model_copy(update={"tripped_at": now})
    reason = (
        f"blast radius tripped: {view.unhealthy} of {view.known} instances already "
        f"unhealthy, limit {limit} (max_open {radius.max_open}, max_percent "
        f"{radius.max_percent:g}); no new automated remediations until they fall to "
        f"{radius.resume_at(view.known)}"
    )
    tripped = _event(
        record.cluster_id,
        PolicyEventKind.BLAST_RADIUS_TRIPPED,
        reason,
        now,
        f"propose/{proposal.remediation_id}",
        proposal,
    )
    return Admission(False, reason, record, (*events, tripped), BlockReason.BLAST_RADIUS)


def _budget_check(
    view: ClusterView,
    proposal: Proposal,
    policy: Policy,
    record: ClusterRecord,
    events: tuple[PolicyEvent, ...],
    now: datetime,
) -> Admission | None:
    """The hourly budget of automated openings (event time); running out is
    edge-triggered, like the blast radius (one RATE_BUDGET_EXHAUSTED event)."""
    budget = policy.rate_budget_per_hour
    if not budget:
        return None
    recent = budget_used(view.admissions, proposal.at)
    if recent < budget:
        return None
    reason = f"rate budget: {recent} opened in the last hour, budget {budget}"
    if record.budget_exhausted_at is None:
        record = record.model_copy(update={"budget_exhausted_at": now})
        exhausted = _event(
            record.cluster_id,
            PolicyEventKind.RATE_BUDGET_EXHAUSTED,
            reason,
            now,
            f"propose/{proposal.remediation_id}",
            proposal,
        )
        events = (*events, exhausted)
    return Admission(False, reason, record, events, BlockReason.RATE_BUDGET)


def _domain_check(
    view: ClusterView,
    proposal: Proposal,
    policy: Policy,
    record: ClusterRecord,
    events: tuple[PolicyEvent, ...],
    now: datetime,
    queued: bool = False,
) -> Admission | None:
    """The blast radius per failure domain: the refusal, or None when every domain of the
    instance has room (an instance in no domain always has).

    A proposal in a tripped domain is refused; one that would take a domain past its
    limit trips it (every such domain, each with its event) and is refused, unless it
    comes from the queue (``queued``, see :func:`admit`). Other domains, and instances
    in none, are not held back.
    """
    limits = policy.blast_radius.domains
    if not limits.keys or not proposal.domains:
        return None
    counts = []
    for name in proposal.domains:
        # The asking instance counts as known in the domain its signal placed it in.
        known = view.domain_known.get(name, 0) + (name not in view.asking_domains)
        counts.append((name, known, view.domain_unhealthy.get(name, 0)))
    for name, known, unhealthy in counts:
        if name in record.tripped_domains:
            reason = (
                f"blast radius in {name}: {unhealthy} of {known} instances unhealthy, tripped "
                f"at {limits.limit(known)}; resumes at {limits.resume_at(known)} or fewer"
            )
            return Admission(False, reason, record, events, BlockReason.DOMAIN)
    over = [(n, k, u) for n, k, u in counts if u + 1 > limits.limit(k)]
    if not over:
        return None
    if queued:
        full = ", ".join(f"{n} ({u} of limit {limits.limit(k)} open)" for n, k, u in over)
        return Admission(False, f"blast radius in {full}", record, events, BlockReason.DOMAIN)
    tripped = dict(record.tripped_domains)
    reasons = []
    for name, known, unhealthy in over:
        tripped[name] = now
        reason = (
            f"blast radius tripped in {name}: {unhealthy} of its {known} instances already "
            f"unhealthy, limit {limits.limit(known)} per domain (max_open {limits.max_open}, "
            f"max_percent {limits.max_percent:g}); no new automated remediations there until "
            f"they fall to {limits.resume_at(known)}"
        )
        reasons.append(reason)
        kind = PolicyEventKind.BLAST_RADIUS_TRIPPED
        cause = f"propose/{proposal.remediation_id}/{name}"
        events = (*events, _event(record.cluster_id, kind, reason, now, cause, proposal, name))
    record = record.model_copy(update={"tripped_domains": tripped})
    return Admission(False, "; ".join(reasons), record, events, BlockReason.DOMAIN)


def no_room(
    record: ClusterRecord,
    known: int,
    unhealthy: int,
    admissions: Sequence[datetime],
    clock: datetime,
    policy: Policy,
) -> bool:
    """Whether the cluster certainly has no room for any automated proposal now: paused,
    frozen as a whole, tripped, at its blast-radius limit or out of budget (``record`` reconciled at
    ``clock``). A shortcut for the queue's head asking again after every signal; when in
    doubt it says False and :func:`admit` decides."""
    if record.paused is not None or record.tripped_at is not None:
        return True
    if policy.freezes.first(record.cluster_id, clock, None) is not None:
        return True
    if unhealthy + 1 > policy.blast_radius.limit(known):
        return True
    budget = policy.rate_budget_per_hour
    return bool(budget) and budget_used(admissions, clock) >= budget


def budget_used(admissions: Sequence[datetime], at: datetime) -> int:
    """Admissions within the hour before ``at`` (event time), later ones included."""
    return len(admissions) - bisect.bisect_right(admissions, at - BUDGET_WINDOW)


def reconcile(
    view: ClusterView, policy: Policy, now: datetime
) -> tuple[ClusterRecord, tuple[PolicyEvent, ...]]:
    """Resume a tripped cluster whose unhealthy count fell to the lower mark, and say
    when a spent hourly budget has room again (event time).

    Level-triggered: the pipeline calls it whenever a cluster's counts may have fallen
    or its clock moved, and admission calls it first. An event's id comes from the state
    it ends, so doing this again after a crash re-publishes the same event.
    """
    record = view.record
    events: tuple[PolicyEvent, ...] = ()
    if record.tripped_at is not None:
        resume = policy.blast_radius.resume_at(view.known)
        if view.unhealthy <= resume:
            cause = f"resume/{format_timestamp(record.tripped_at)}"
            record = record.model_copy(update={"tripped_at": None})
            reason = (
                f"blast radius resumed: {view.unhealthy} of {view.known} instances unhealthy, "
                f"at or below {resume}"
            )
            kind = PolicyEventKind.BLAST_RADIUS_RESUMED
            events = (*events, _event(record.cluster_id, kind, reason, now, cause))
    if record.tripped_domains:
        record, resumed = _resume_domains(view, record, policy, now)
        events = (*events, *resumed)
    budget = policy.rate_budget_per_hour
    if record.budget_exhausted_at is not None:
        used = budget_used(view.admissions, view.latest or now)
        if not budget or used < budget:
            cause = f"restore/{format_timestamp(record.budget_exhausted_at)}"
            record = record.model_copy(update={"budget_exhausted_at": None})
            reason = f"rate budget has room again: {used} opened in the last hour"
            kind = PolicyEventKind.RATE_BUDGET_RESTORED
            events = (*events, _event(record.cluster_id, kind, reason, now, cause))
    return record, events


def _resume_domains(
    view: ClusterView, record: ClusterRecord, policy: Policy, now: datetime
) -> tuple[ClusterRecord, tuple[PolicyEvent, ...]]:
    """Resume each tripped failure domain whose unhealthy count fell to its lower mark,
    or whose key the policy no longer limits (it would never resume otherwise)."""
    limits = policy.blast_radius.domains
    still: dict[str, datetime] = {}
    events: tuple[PolicyEvent, ...] = ()
    for name, tripped_at in sorted(record.tripped_domains.items()):
        known = view.domain_known.get(name, 0)
        unhealthy = view.domain_unhealthy.get(name, 0)
        if topology.key_of(name) not in limits.keys:
            reason = f"blast radius resumed in {name}: the policy no longer limits it"
        elif unhealthy <= limits.resume_at(known):
            reason = (
                f"blast radius resumed in {name}: {unhealthy} of its {known} instances "
                f"unhealthy, at or below {limits.resume_at(known)}"
            )
        else:
            still[name] = tripped_at
            continue
        cause = f"resume/{name}/{format_timestamp(tripped_at)}"
        kind = PolicyEventKind.BLAST_RADIUS_RESUMED
        events = (*events, _event(record.cluster_id, kind, reason, now, cause, domain=name))
    if events:
        record = record.model_copy(update={"tripped_domains": still})
    return record, events


class ControlKind(enum.StrEnum):
    PAUSE = "PAUSE"
    RESUME = "RESUME"


def control(
    record: ClusterRecord,
    kind: ControlKind,
    *,
    reason: str,
    principal: str,
    now: datetime,
    cause: str,
) -> tuple[ClusterRecord, tuple[PolicyEvent, ...]]:
    """An operator pauses or resumes automated remediation in the cluster.

    ``cause`` (the command's id) makes the event's id stable on a replay.
    """
    if kind is ControlKind.PAUSE:
        record = record.model_copy(update={"paused": Pause(reason=reason, by=principal, at=now)})
        text = f"paused by {principal}: {reason}"
        return record, (
            _event(record.cluster_id, PolicyEventKind.CLUSTER_PAUSED, text, now, cause),
        )
    if record.paused is None:
        return record, ()
    record = record.model_copy(update={"paused": None})
    text = f"resumed by {principal}" + (f": {reason}" if reason else "")
    return record, (_event(record.cluster_id, PolicyEventKind.CLUSTER_RESUMED, text, now, cause),)


def _event(
    cluster_id: str,
    kind: PolicyEventKind,
    reason: str,
    now: datetime,
    cause: str,
    proposal: Proposal | None = None,
    domain: str | None = None,
) -> PolicyEvent:
    return PolicyEvent.of(
        kind,
        cluster_id,
        proposal.instance_id if proposal is not None else None,
        scope="-",  # the cluster's own event, whichever proposal caused it
        cause=cause,
        rule=proposal.rule if proposal is not None else None,
        mode=proposal.mode if proposal is not None else None,
        reason=reason,
        at=now,
        domain=domain,
    )
