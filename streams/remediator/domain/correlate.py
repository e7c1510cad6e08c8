"""Correlation of health signals per instance: the decision the pipeline applies.

The contract, in the shape of a stateful stream operator::

    decide(state or None, signal, now) -> Decision(new state, transitions to publish, outcome)

- The state is everything known about one instance (:class:`InstanceState`): the signals
  already seen (for dedup), the open remediation if any, the recent closed ones.
- A signal whose id was seen before is a ``DUPLICATE``: the state comes back unchanged and
  nothing is published. Because "seen" and its effect live in the same state value, a
  crash can never leave a signal marked seen without its remediation (DESIGN.md, the
  dedup trap).
- A failing signal with no open remediation opens an AUTOMATED one in PENDING_APPROVAL,
  when the policy says so; with one open, it is attached to it (invariant 1: one open
  remediation per instance).
- Event time only: dedup memory expires ``dedup_ttl`` after the newest signal seen for
  the instance, and a signal older than that horizon is ``STALE`` and ignored. ``now`` is
  used only to stamp records and transitions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from . import ids, lifecycle
from .lifecycle import Event
from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    DecisionRecord,
    HealthSignal,
    Identifier,
    OptOut,
    PolicyEvent,
    PolicyEventKind,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTransition,
    RemediationTrigger,
    Severity,
    SignalKind,
    SignalRef,
    Timestamp,
    format_timestamp,
)
from .policy import DEFAULT_POLICY, Action, Policy, Verdict, classify, heavier, next_mode
from .replies import RememberedReply
from .safety import AdmissionKind, AdmissionRequest, AdmissionVerdict

#: Who the pipeline's own changes are recorded as (``requested_by``, ``actor``).
SYSTEM_PRINCIPAL = "system:remediator"
#: ``reviewed_by`` of a remediation the policy approved (DESIGN.md).
AUTO_APPROVED = "Auto-Approved"
#: A proposal still unanswered this long (event time) is asked again on the next signal.
PROPOSAL_RESEND = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    #: How long a signal id is remembered, in event time. Well beyond any redelivery.
    dedup_ttl: timedelta = timedelta(days=7)
    #: At most this many signals are listed on one remediation; later ones still count
    #: as seen but are not attached.
    max_signals_per_remediation: int = 100
    #: Closed remediations kept per instance, newest first.
    max_closed: int = 50
    #: Recent policy decisions kept per instance, for ``explain``.
    max_decisions: int = 50
    policy: Policy = DEFAULT_POLICY
    #: Ask the cluster's safety owner before opening (the pipeline does); off, open at once.
    cluster_admission: bool = False


DEFAULT_CONFIG = CorrelationConfig()


class OpenRemediation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation: Remediation
    sequence: int = Field(ge=1, description="Sequence of its last published transition.")


class Proposal(BaseModel):
    """An automated remediation waiting for the cluster's admission (not open yet)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation: Remediation
    at: Timestamp = Field(description="Event time of the signal that proposed it.")
    cleared: SignalRef | None = Field(
        default=None, description="The signal that cleared it while waiting: auto-resolves."
    )
    asked_at: Timestamp | None = Field(
        default=None, description="Event time it was last asked again (see PROPOSAL_RESEND)."
    )


class InstanceState(BaseModel):
    """Everything the service keeps about one instance: one table value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_id: Identifier
    instance_id: Identifier
    seen: dict[str, Timestamp] = Field(
        default_factory=dict, description="Signal key -> its event time, for dedup."
    )
    watermark: Timestamp | None = Field(
        default=None, description="Newest event time seen for the instance."
    )
    open: OpenRemediation | None = None
    closed: list[Remediation] = Field(
        default_factory=list, description="Recent closed remediations, newest first."
    )
    replies: dict[str, RememberedReply] = Field(
        default_factory=dict, description="Replies of recent API commands, by command id."
    )
    strikes: dict[str, list[Timestamp]] = Field(
        default_factory=dict, description="Rule -> recent failing signal times (debounce)."
    )
    opt_out: OptOut | None = None
    held_for_human_at: Timestamp | None = Field(
        default=None, description="When a HELD_FOR_HUMAN event was last published."
    )
    shadowed: dict[str, Timestamp] = Field(
        default_factory=dict, description="Rule -> last dry-run open (shadow mode)."
    )
    decisions: list[DecisionRecord] = Field(
        default_factory=list, description="Recent policy decisions, newest first."
    )
    proposal: Proposal | None = None
    cooldown_from: Timestamp | None = Field(
        default=None, description="When the last remediation ended, for the cooldown."
    )
    registered: bool = Field(
        default=False, description="Whether the cluster's safety owner knows the instance."
    )

    @classmethod
    def empty(cls, cluster_id: str, instance_id: str) -> InstanceState:
        return cls(cluster_id=cluster_id, instance_id=instance_id)


class Outcome(enum.StrEnum):
    DUPLICATE = "DUPLICATE"  # seen before: nothing changes
    STALE = "STALE"  # older than the dedup horizon: ignored
    RECORDED = "RECORDED"  # remembered, no remediation involved
    OPENED = "OPENED"  # opened a new remediation
    PROPOSED = "PROPOSED"  # would open; waiting for the cluster's admission
    ATTACHED = "ATTACHED"  # attached to the open remediation
    RESOLVED = "RESOLVED"  # cleared the signal that opened a waiting remediation
    DEBOUNCED = "DEBOUNCED"  # counted; the rule wants more before opening
    BLOCKED = "BLOCKED"  # a safety rule kept it from opening (opt-out, cooldown, human)
    SHADOWED = "SHADOWED"  # dry run: published what would have been opened


@dataclass(frozen=True, slots=True)
class Decision:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    outcome: Outcome
    verdict: Verdict | None = None
    events: tuple[PolicyEvent, ...] = ()
    #: Messages for the cluster's safety owner (see :mod:`safety`).
    requests: tuple[AdmissionRequest, ...] = ()


def signal_key(signal: HealthSignal) -> str:
    """The dedup key of a signal: ``run:<run_id>`` or ``event:<event_id>``."""
    if isinstance(signal, ActiveHealthCheckRun):
        return f"run:{signal.run_id}"
    return f"event:{signal.event_id}"


def event_time(signal: HealthSignal) -> datetime:
    if isinstance(signal, ActiveHealthCheckRun):
        return signal.completed_at
    return signal.observed_at


def is_failing(signal: HealthSignal) -> bool:
    """A FAILED active run, or a CRITICAL passive alert that is firing."""
    if isinstance(signal, ActiveHealthCheckRun):
        return signal.result is ActiveTestResult.FAILED
    return signal.status is AlertStatus.FIRING and signal.severity is Severity.CRITICAL


def signal_ref(signal: HealthSignal) -> SignalRef:
    if isinstance(signal, ActiveHealthCheckRun):
        return SignalRef(
            kind=SignalKind.ACTIVE_RUN,
            id=str(signal.run_id),
            name=signal.test,
            status=signal.result.value,
            observed_at=signal.completed_at,
        )
    return SignalRef(
        kind=SignalKind.PASSIVE_EVENT,
        id=str(signal.event_id),
        name=signal.alert_name,
        status=f"{signal.severity.value} {signal.status.value}",
        observed_at=signal.observed_at,
    )


def decide(
    state: InstanceState | None,
    signal: HealthSignal,
    now: datetime,
    config: CorrelationConfig = DEFAULT_CONFIG,
) -> Decision:
    """Apply one health signal to one instance's state. Pure; see the module docstring."""
    if state is None:
        state = InstanceState.empty(signal.cluster_id, signal.instance_id)
    key = signal_key(signal)
    if key in state.seen:
        return Decision(state, (), Outcome.DUPLICATE)
    at = event_time(signal)
    if state.watermark is not None and at < state.watermark - config.dedup_ttl:
        return Decision(state, (), Outcome.STALE)

    state = _remember(state, key, at, config)
    policy = config.policy
    verdict = classify(signal, policy)
    register: tuple[AdmissionRequest, ...] = ()
    if config.cluster_admission and not state.registered:
        state = state.model_copy(update={"registered": True})
        register = (
            AdmissionRequest(
                kind=AdmissionKind.REGISTER,
                cluster_id=signal.cluster_id,
                instance_id=signal.instance_id,
                at=at,
            ),
        )
    decision = _decide(state, signal, key, at, verdict, now, config)
    transition = decision.transitions[0] if decision.transitions else None
    record = DecisionRecord(
        at=at,
        signal=signal_ref(signal),
        outcome=decision.outcome.value,
        rule=verdict.rule,
        reason=decision.verdict.reason if decision.verdict is not None else verdict.reason,
        remediation_id=transition.remediation_id if transition is not None else None,
    )
    decisions = [record, *decision.state.decisions][: max(config.max_decisions, 1)]
    return Decision(
        decision.state.model_copy(update={"decisions": decisions}),
        decision.transitions,
        decision.outcome,
        decision.verdict or verdict,
        decision.events,
        register + decision.requests,
    )


def _decide(
    state: InstanceState,
    signal: HealthSignal,
    key: str,
    at: datetime,
    verdict: Verdict,
    now: datetime,
    config: CorrelationConfig,
) -> Decision:
    policy = config.policy
    current = state.open

    if verdict.action is Action.HEALTHY:
        if current is not None and _clears(current.remediation, signal, at, policy):
            state, transition = record_change(
                state,
                current.remediation,
                Event.AUTO_RESOLVE,
                now=now,
                actor=SYSTEM_PRINCIPAL,
                reason=f"{verdict.reason}: the signal that opened it cleared",
                max_closed=config.max_closed,
            )
            return Decision(state, (transition,), Outcome.RESOLVED, verdict)
        proposal = state.proposal
        if (
            current is None
            and proposal is not None
            and proposal.cleared is None
            and _clears(proposal.remediation, signal, at, policy)
        ):
            # It still opens if admitted (and auto-resolves at once), so that a flap
            # shows and starts the cooldown whatever the admission's timing.
            cleared = proposal.model_copy(update={"cleared": signal_ref(signal)})
            state = state.model_copy(update={"proposal": cleared})
            return Decision(state, (), Outcome.RESOLVED, verdict)
        return Decision(state, (), Outcome.RECORDED, verdict)

    proposal = state.proposal
    if current is None and proposal is not None and is_failing(signal):
        # Waiting for the cluster's answer: the signal joins the proposed remediation.
        pending = proposal.remediation
        if len(pending.signals) < config.max_signals_per_remediation:
            pending = _attach(pending, signal)
            if verdict.mode is not None and heavier(verdict.mode, pending.mode):
                pending = pending.model_copy(
                    update={"mode": verdict.mode, "rule": verdict.rule, "reason": verdict.reason}
                )
            proposal = proposal.model_copy(update={"remediation": pending})
            state = state.model_copy(update={"proposal": proposal})
        # Still no answer a while later (it should never be lost, but a stuck proposal
        # would silence the instance): ask again. The owner answers a repeat the same way.
        asked = proposal.asked_at or proposal.at
        if at - asked >= PROPOSAL_RESEND:
            state = state.model_copy(
                update={"proposal": proposal.model_copy(update={"asked_at": at})}
            )
            return Decision(state, (), Outcome.ATTACHED, verdict, requests=(propose(proposal),))
        return Decision(state, (), Outcome.ATTACHED, verdict)

    if current is not None:
        if not is_failing(signal):
            return Decision(state, (), Outcome.RECORDED, verdict)
        if len(current.remediation.signals) >= config.max_signals_per_remediation:
            return Decision(state, (), Outcome.RECORDED, verdict)
        attached = _attach(current.remediation, signal)
        state, transition = record_change(
            state,
            attached,
            Event.ATTACH_SIGNAL,
            now=now,
            actor=SYSTEM_PRINCIPAL,
            reason=f"correlated {signal_ref(signal).kind.value} {key}: {verdict.reason}",
        )
        transitions = [transition]
        upgraded = _upgrade(state, verdict, now)
        if upgraded is not None:
            state, upgrade = upgraded
            transitions.append(upgrade)
        return Decision(state, tuple(transitions), Outcome.ATTACHED, verdict)

    if verdict.action is not Action.OPEN or verdict.mode is None:
        return Decision(state, (), Outcome.RECORDED, verdict)

    # A failing signal that a rule would open a remediation for: the safety rules decide.
    if state.opt_out is not None:
        opt = state.opt_out
        return _held(state, verdict, f"instance opted out by {opt.by}: {opt.reason}")
    last = state.closed[0] if state.closed else None
    ended = state.cooldown_from or (last.end_time if last is not None else None)
    if last is not None and ended is not None and at < ended + policy.cooldown:
        until = format_timestamp(ended + policy.cooldown)
        return _held(state, verdict, f"cooldown after {last.id} until {until}")

    rule = policy.rule(verdict.rule)
    if rule is not None and rule.debounce_count > 1:
        horizon = at - rule.debounce_window
        recent = [t for t in state.strikes.get(rule.name, []) if t >= horizon] + [at]
        strikes = {**state.strikes, rule.name: recent}
        state = state.model_copy(update={"strikes": strikes})
        if len(recent) < rule.debounce_count:
            reason = (
                f"{verdict.reason}: {len(recent)} of {rule.debounce_count} failing signals "
                f"within {rule.debounce_window_minutes:g} min [rule {rule.name}]"
            )
            return Decision(state, (), Outcome.DEBOUNCED, _with_reason(verdict, reason))

    hold = policy.hold_for_human
    window = timedelta(hours=hold.window_hours)
    carried_out = [
        c for c in state.closed if c.start_time is not None and c.start_time >= at - window
    ]
    if len(carried_out) >= hold.max_remediations:
        reason = (
            f"{len(carried_out)} remediations carried out within {hold.window_hours:g} h: "
            "left to a human"
        )
        events: tuple[PolicyEvent, ...] = ()
        if state.held_for_human_at is None or state.held_for_human_at < at - window:
            events = (
                _policy_event(
                    state, PolicyEventKind.HELD_FOR_HUMAN, key, signal, verdict, reason, now
                ),
            )
            state = state.model_copy(update={"held_for_human_at": at})
        held = _held(state, verdict, reason)
        return Decision(held.state, (), held.outcome, held.verdict, events)

    mode = verdict.mode
    escalated_from = _previous_attempt(state, verdict.rule, at, policy.escalation_window)
    if escalated_from is not None and not heavier(mode, escalated_from.mode):
        mode = next_mode(escalated_from.mode)
        if mode is not verdict.mode:
            verdict = _with_reason(
                Verdict(verdict.action, verdict.rule, verdict.reason, mode),
                f"{verdict.reason}; came back after {escalated_from.id} "
                f"({_short(escalated_from.mode)}, {escalated_from.state.value}): escalated",
            )

    if policy.shadows(signal.cluster_id, verdict.rule):
        seen_at = state.shadowed.get(verdict.rule)
        reason = f"dry run: would open {_short(mode)}: {verdict.reason} [rule {verdict.rule}]"
        if seen_at is not None and at < seen_at + policy.cooldown:
            return Decision(state, (), Outcome.SHADOWED, _with_reason(verdict, reason))
        state = state.model_copy(update={"shadowed": {**state.shadowed, verdict.rule: at}})
        event = _policy_event(state, PolicyEventKind.SHADOW_OPEN, key, signal, verdict, reason, now)
        return Decision(state, (), Outcome.SHADOWED, _with_reason(verdict, reason), (event,))

    remediation = Remediation(
        id=ids.automated_remediation_id(signal.cluster_id, signal.instance_id, key),
        cluster_id=signal.cluster_id,
        instance_id=signal.instance_id,
        instance_name=signal.instance_name,
        mode=mode,
        trigger=RemediationTrigger.AUTOMATED,
        state=RemediationState.PENDING_APPROVAL,
        reason=verdict.reason,
        active_health_check_run_id=(
            str(signal.run_id) if isinstance(signal, ActiveHealthCheckRun) else None
        ),
        passive_health_check_event_id=(
            None if isinstance(signal, ActiveHealthCheckRun) else str(signal.event_id)
        ),
        requested_by=SYSTEM_PRINCIPAL,
        create_time=now,
        update_time=now,
        signals=[signal_ref(signal)],
        rule=verdict.rule,
    )
    if verdict.rule in state.strikes:
        state = state.model_copy(
            update={"strikes": {k: v for k, v in state.strikes.items() if k != verdict.rule}}
        )
    if config.cluster_admission:
        # The cluster's safety owner decides (blast radius, budget, pause): propose.
        proposal = Proposal(remediation=remediation, at=at)
        state = state.model_copy(update={"proposal": proposal})
        return Decision(state, (), Outcome.PROPOSED, verdict, requests=(propose(proposal),))
    state, opened = _open(state, remediation, policy, now)
    return Decision(state, opened, Outcome.OPENED, verdict)


def propose(proposal: Proposal) -> AdmissionRequest:
    """The PROPOSE request of ``proposal`` (the same every time it is asked)."""
    remediation = proposal.remediation
    return AdmissionRequest(
        kind=AdmissionKind.PROPOSE,
        cluster_id=remediation.cluster_id,
        instance_id=remediation.instance_id,
        remediation_id=remediation.id,
        rule=remediation.rule,
        mode=remediation.mode,
        at=proposal.at,
    )


def _open(
    state: InstanceState, remediation: Remediation, policy: Policy, now: datetime
) -> tuple[InstanceState, tuple[RemediationTransition, ...]]:
    """Open an automated remediation, approved at once if its cluster says so."""
    state, created = record_creation(
        state,
        remediation,
        Event.CREATE_AUTOMATED,
        now=now,
        actor=SYSTEM_PRINCIPAL,
        reason=f"{remediation.reason} [rule {remediation.rule}]",
    )
    transitions = [created]
    rule = remediation.rule or ""
    if policy.auto_approves(remediation.cluster_id, rule):
        comment = f"policy: rule {rule} is auto-approved in cluster {remediation.cluster_id}"
        state, approved = record_change(
            state,
            remediation,
            Event.APPROVE,
            now=now,
            actor=AUTO_APPROVED,
            reason=comment,
            changes={"reviewed_by": AUTO_APPROVED, "review_time": now, "review_comment": comment},
        )
        transitions.append(approved)
    return state, tuple(transitions)


def apply_verdict(
    state: InstanceState | None,
    verdict: AdmissionVerdict,
    now: datetime,
    config: CorrelationConfig = DEFAULT_CONFIG,
) -> Decision:
    """The cluster answered a proposal: open it, or record why not. Idempotent."""
    if state is None:
        state = InstanceState.empty(verdict.cluster_id, verdict.instance_id)
    proposal = state.proposal
    if proposal is None or proposal.remediation.id != verdict.remediation_id:
        # Already applied, or the proposal was dropped (its signal cleared): nothing to do,
        # but an admission nobody uses must not keep counting against the cluster.
        unused = verdict.admitted and not _is_open(state, verdict.remediation_id)
        return Decision(
            state, (), Outcome.DUPLICATE, requests=_close(verdict, now) if unused else ()
        )
    remediation = proposal.remediation
    state = state.model_copy(update={"proposal": None})
    opener = remediation.signals[0]
    outcome: Outcome
    if not verdict.admitted:
        transitions: tuple[RemediationTransition, ...] = ()
        outcome, reason = Outcome.BLOCKED, f"not opened, {verdict.reason}"
        requests: tuple[AdmissionRequest, ...] = ()
    elif state.open is not None:
        transitions, outcome = (), Outcome.BLOCKED
        reason = f"not opened: {state.open.remediation.id} was opened meanwhile"
        requests = _close(verdict, now)
    else:
        state, transitions = _open(state, remediation, config.policy, now)
        outcome, reason, requests = Outcome.OPENED, f"{remediation.reason} ({verdict.reason})", ()
        if proposal.cleared is not None and state.open is not None:
            cleared = proposal.cleared
            state, resolved = record_change(
                state,
                state.open.remediation,
                Event.AUTO_RESOLVE,
                now=now,
                actor=SYSTEM_PRINCIPAL,
                reason=f"{cleared.name} {cleared.status} while it waited for admission: "
                "the signal that opened it cleared",
                max_closed=config.max_closed,
            )
            transitions = (*transitions, resolved)
    record = DecisionRecord(
        at=proposal.at,
        signal=opener,
        outcome=outcome.value,
        rule=remediation.rule,
        reason=reason,
        remediation_id=remediation.id if transitions else None,
    )
    decisions = [record, *state.decisions][: max(config.max_decisions, 1)]
    state = state.model_copy(update={"decisions": decisions})
    return Decision(state, transitions, outcome, requests=requests)


def _is_open(state: InstanceState, remediation_id: str) -> bool:
    return state.open is not None and state.open.remediation.id == remediation_id


def _close(verdict: AdmissionVerdict, now: datetime) -> tuple[AdmissionRequest, ...]:
    """Give back an admission nobody will use. ``at`` is only informative for a CLOSE:
    no signal is behind it, so it carries the service's clock."""
    return (
        AdmissionRequest(
            kind=AdmissionKind.CLOSE,
            cluster_id=verdict.cluster_id,
            instance_id=verdict.instance_id,
            remediation_id=verdict.remediation_id,
            at=now,
        ),
    )


def _with_reason(verdict: Verdict, reason: str) -> Verdict:
    return Verdict(verdict.action, verdict.rule, reason, verdict.mode)


def _short(mode: RemediationMode) -> str:
    return mode.value.removeprefix("REMEDIATION_MODE_")


def _held(state: InstanceState, verdict: Verdict, why: str) -> Decision:
    reason = f"{verdict.reason}: not opened, {why} [rule {verdict.rule}]"
    return Decision(state, (), Outcome.BLOCKED, _with_reason(verdict, reason))


def _clears(remediation: Remediation, signal: HealthSignal, at: datetime, policy: Policy) -> bool:
    """Whether a healthy ``signal`` clears the one that opened a waiting automated remediation."""
    if remediation.trigger is not RemediationTrigger.AUTOMATED:
        return False
    if remediation.state not in (RemediationState.PENDING_APPROVAL, RemediationState.PENDING):
        return False
    if not remediation.signals:
        return False
    opener = remediation.signals[0]
    if isinstance(signal, ActiveHealthCheckRun):
        same = opener.kind is SignalKind.ACTIVE_RUN and opener.name == signal.test
        healthy = signal.result is ActiveTestResult.PASSED
    else:
        same = opener.kind is SignalKind.PASSIVE_EVENT and opener.name == signal.alert_name
        healthy = signal.status is AlertStatus.RESOLVED
    within = policy.auto_resolve_within
    return same and healthy and (within is None or at - opener.observed_at <= within)


def _upgrade(
    state: InstanceState, verdict: Verdict, now: datetime
) -> tuple[InstanceState, RemediationTransition] | None:
    """Raise the mode of a waiting automated remediation to a worse signal's mode."""
    current = state.open
    if current is None or verdict.action is not Action.OPEN or verdict.mode is None:
        return None
    remediation = current.remediation
    if remediation.trigger is not RemediationTrigger.AUTOMATED:
        return None
    if remediation.state not in (RemediationState.PENDING_APPROVAL, RemediationState.PENDING):
        return None
    if not heavier(verdict.mode, remediation.mode):
        return None
    reason = (
        f"upgraded {_short(remediation.mode)} -> {_short(verdict.mode)}: {verdict.reason} "
        f"[rule {verdict.rule}]"
    )
    return record_change(
        state,
        remediation,
        Event.UPGRADE_MODE,
        now=now,
        actor=SYSTEM_PRINCIPAL,
        reason=reason,
        changes={"mode": verdict.mode, "rule": verdict.rule},
    )


def _previous_attempt(
    state: InstanceState, rule: str, at: datetime, window: timedelta
) -> Remediation | None:
    """The last remediation of the same problem carried out within ``window`` before ``at``."""
    for closed in state.closed:
        if closed.end_time is None or closed.end_time < at - window:
            return None
        if closed.rule == rule and closed.start_time is not None:
            return closed
    return None


def _policy_event(
    state: InstanceState,
    kind: PolicyEventKind,
    key: str,
    signal: HealthSignal,
    verdict: Verdict,
    reason: str,
    now: datetime,
) -> PolicyEvent:
    return PolicyEvent(
        event_id=ids.policy_event_id(state.cluster_id, state.instance_id, kind.value, key),
        kind=kind,
        cluster_id=state.cluster_id,
        instance_id=state.instance_id,
        rule=verdict.rule,
        mode=verdict.mode,
        reason=reason,
        occurred_at=now,
        signal=signal_ref(signal),
    )


def record_creation(
    state: InstanceState,
    remediation: Remediation,
    event: Event,
    *,
    now: datetime,
    actor: str,
    reason: str,
) -> tuple[InstanceState, RemediationTransition]:
    """Open ``remediation`` on the instance; its transition has sequence 1.

    Raises :class:`lifecycle.IllegalTransition` if the record does not fit ``event`` or the
    instance already has an open remediation (invariant 1).
    """
    if state.open is not None:
        raise lifecycle.IllegalTransition(
            None,
            event,
            f"instance already has open remediation {state.open.remediation.id}",
        )
    lifecycle.create(remediation, event)
    transition = _transition(None, remediation, 1, event, now, actor, reason)
    opened = OpenRemediation(remediation=remediation, sequence=1)
    new_state = state.model_copy(update={"open": opened})
    return new_state, transition


def record_change(
    state: InstanceState,
    remediation: Remediation,
    event: Event,
    *,
    now: datetime,
    actor: str,
    reason: str,
    changes: dict[str, object] | None = None,
    max_closed: int = DEFAULT_CONFIG.max_closed,
) -> tuple[InstanceState, RemediationTransition]:
    """Apply ``event`` to the instance's open remediation and return the transition.

    ``remediation`` is the open record, possibly with extra changes already made to it
    (an attached signal). Raises :class:`lifecycle.IllegalTransition` and changes nothing
    when the move is not allowed. A terminal state moves the record to ``closed``.
    """
    current = state.open
    if current is None or current.remediation.id != remediation.id:
        raise lifecycle.IllegalTransition(
            remediation.state, event, f"remediation {remediation.id} is not open"
        )
    from_state = current.remediation.state
    updated = lifecycle.apply(remediation, event, now=now, changes=changes)
    sequence = current.sequence + 1
    transition = _transition(from_state, updated, sequence, event, now, actor, reason)
    if updated.state.is_terminal:
        closed = [updated, *state.closed][: max(max_closed, 1)]
        # The cooldown runs from the later of the service's clock and the newest event
        # time seen: on event time when signals run ahead (a replay, a backlog).
        ended = now if state.watermark is None else max(now, state.watermark)
        new_state = state.model_copy(
            update={"open": None, "closed": closed, "cooldown_from": ended}
        )
    else:
        new_state = state.model_copy(
            update={"open": OpenRemediation(remediation=updated, sequence=sequence)}
        )
    return new_state, transition


def _transition(
    from_state: RemediationState | None,
    remediation: Remediation,
    sequence: int,
    event: Event,
    now: datetime,
    actor: str,
    reason: str,
) -> RemediationTransition:
    return RemediationTransition(
        transition_id=ids.transition_id(remediation.id, sequence),
        remediation_id=remediation.id,
        sequence=sequence,
        from_state=from_state,
        to_state=remediation.state,
        occurred_at=now,
        actor=actor,
        reason=reason,
        remediation=remediation,
        event=event.value,
    )


def _remember(
    state: InstanceState, key: str, at: datetime, config: CorrelationConfig
) -> InstanceState:
    watermark = at if state.watermark is None or at > state.watermark else state.watermark
    horizon = watermark - config.dedup_ttl
    seen = {k: t for k, t in state.seen.items() if t >= horizon}
    seen[key] = at
    return state.model_copy(update={"seen": seen, "watermark": watermark})


def _attach(remediation: Remediation, signal: HealthSignal) -> Remediation:
    """The open record with ``signal`` added; fills the seed's empty id field of its kind."""
    update: dict[str, object] = {"signals": [*remediation.signals, signal_ref(signal)]}
    if isinstance(signal, ActiveHealthCheckRun):
        if remediation.active_health_check_run_id is None:
            update["active_health_check_run_id"] = str(signal.run_id)
    elif remediation.passive_health_check_event_id is None:
        update["passive_health_check_event_id"] = str(signal.event_id)
    return remediation.model_copy(update=update)
