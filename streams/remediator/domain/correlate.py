"""Correlation of health signals per instance: the decision the pipeline applies.

The contract, in the shape of a stateful stream operator::

    decide(state or None, signal, now, config, cluster) -> Decision(new state, outputs, outcome)

- The state is the instance's hot record (:class:`~remediator.domain.state.InstanceState`):
  the signals it remembers (dedup), its open remediation if any, a summary of past ones.
- A signal whose id is remembered is a ``DUPLICATE``; one older than the memory (see
  :mod:`dedup`) or than the dedup TTL behind the newest signal is ``STALE``. Both change
  nothing. Because "seen" and its effect live in the same record, a crash can never leave
  a signal marked seen without its remediation (the dedup trap: a signal marked seen
  before its effect is durable would be lost by a crash in between).
- A failing signal with no open remediation opens an AUTOMATED one in PENDING_APPROVAL
  when the policy says so and the cluster admits it (:mod:`safety`, decided on the spot
  from ``cluster``); with one open, it is attached to it (invariant 1).
- A signal first advances the instance's post-repair verification (:mod:`verification`):
  past its deadline it fails it, health after a success verifies it; a failed one makes
  the next failing signal escalate at once, past debounce and cooldown.
- Event time only: every window (dedup, debounce, cooldown, auto-resolve, escalation,
  budget) runs on the signals' own timestamps. ``now`` only stamps records and
  transitions; the pipeline passes the input's own time, so a replay stamps the same.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from . import alerts, ids, queueing, safety, topology, verification
from .lifecycle import Event
from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    DecisionRecord,
    HealthSignal,
    PassiveHealthCheckEvent,
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
    Verification,
    format_timestamp,
)
from .opening import AUTO_APPROVED as AUTO_APPROVED
from .opening import SYSTEM_PRINCIPAL, open_automated
from .policy import DEFAULT_POLICY, Action, Policy, Verdict, classify, heavier, next_mode
from .safety import BlockReason, ClusterRecord, ClusterView, Proposal
from .state import InstanceState, PastRemediation, record_change


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    #: How long a signal id is remembered at most, in event time behind the instance's
    #: newest signal; older signals are stale.
    dedup_ttl: timedelta = timedelta(days=7)
    #: Signal ids remembered per instance (the most recent by event time); a signal older
    #: than all of them is stale (see :mod:`dedup`).
    dedup_max_ids: int = 32
    #: At most this many signals are listed on one remediation; later ones still count
    #: as seen but are not attached.
    max_signals_per_remediation: int = 100
    policy: Policy = DEFAULT_POLICY
    #: The failure domains' mapping file (instance -> rack, leaf switch), if the policy
    #: names one: see :mod:`topology`.
    domains: topology.DomainMap = field(default_factory=dict)


DEFAULT_CONFIG = CorrelationConfig()


class Outcome(enum.StrEnum):
    DUPLICATE = "DUPLICATE"  # seen before: nothing changes
    STALE = "STALE"  # older than the dedup memory: ignored
    RECORDED = "RECORDED"  # remembered, no remediation involved
    OPENED = "OPENED"  # opened a new remediation
    ATTACHED = "ATTACHED"  # attached to the open remediation
    RESOLVED = "RESOLVED"  # cleared the signal that opened a waiting remediation
    DEBOUNCED = "DEBOUNCED"  # counted; the rule wants more before opening
    BLOCKED = "BLOCKED"  # a safety rule kept it from opening (opt-out, cooldown, cluster)
    QUEUED = "QUEUED"  # refused for lack of room: waits in the cluster's queue
    UNQUEUED = "UNQUEUED"  # cleared the problem a queued proposal was about: dropped
    SHADOWED = "SHADOWED"  # dry run: published what would have been opened


@dataclass(frozen=True, slots=True)
class Decision:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    outcome: Outcome
    verdict: Verdict | None = None
    events: tuple[PolicyEvent, ...] = ()
    #: The cluster's record when admission changed it (tripped, or resumed first).
    cluster: ClusterRecord | None = None
    #: What ``explain`` shows for this signal; None for repeats, stale signals and
    #: healthy signals that changed nothing (they would crowd out the ones that matter).
    record: DecisionRecord | None = None
    #: Why a ``BLOCKED`` signal opened nothing, as a bounded label (metrics).
    blocked: BlockReason | None = None


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
    cluster: ClusterView | None = None,
) -> Decision:
    """Apply one health signal to one instance's state. Pure; see the module docstring.

    ``cluster`` is the instance's cluster as admission sees it; without it (tests of the
    instance's own rules) an automated remediation opens without asking the cluster.
    """
    if state is None:
        state = InstanceState.empty(signal.cluster_id, signal.instance_id)
    key = signal_key(signal)
    if key in state.seen:
        return Decision(state, (), Outcome.DUPLICATE)
    at = event_time(signal)
    if state.seen.is_stale(at) or (
        state.watermark is not None and at < state.watermark - config.dedup_ttl
    ):
        return Decision(state, (), Outcome.STALE)

    newest = state.watermark is None or at >= state.watermark
    state = _place(_remember(state, key, at, config), signal, newest, config)
    # Post-repair verification first: a deadline this signal passes fails it, so that a
    # failing signal past it is the one that escalates at once (domain/verification.py).
    state, checked = verification.observe(state, signal, key, at)
    verdict = classify(signal, config.policy)
    decision = _decide(state, signal, key, at, verdict, now, config, cluster)
    if checked:
        decision = replace(decision, events=(*checked, *decision.events))
    if decision.outcome is Outcome.RECORDED and not is_failing(signal):
        return decision  # a healthy signal that changed nothing: not worth a log line
    transition = decision.transitions[0] if decision.transitions else None
    chosen = decision.verdict or verdict
    record = DecisionRecord(
        at=at,
        signal=signal_ref(signal),
        outcome=decision.outcome.value,
        rule=chosen.rule,
        reason=chosen.reason,
        remediation_id=transition.remediation_id if transition is not None else None,
    )
    return Decision(
        decision.state,
        decision.transitions,
        decision.outcome,
        chosen,
        decision.events,
        decision.cluster,
        record,
        decision.blocked,
    )


def _decide(
    state: InstanceState,
    signal: HealthSignal,
    key: str,
    at: datetime,
    verdict: Verdict,
    now: datetime,
    config: CorrelationConfig,
    cluster: ClusterView | None,
) -> Decision:
    policy = config.policy
    current = state.open
    # A passive alert firing or resolving while a remediation is open is linked to it.
    linked = (
        alerts.link(current.remediation, signal)
        if current is not None and isinstance(signal, PassiveHealthCheckEvent)
        else None
    )

    if verdict.action is Action.HEALTHY:
        if current is not None and _clears(current.remediation, signal, at, policy):
            state, transition = record_change(
                state,
                linked or current.remediation,
                Event.AUTO_RESOLVE,
                now=now,
                actor=SYSTEM_PRINCIPAL,
                reason=f"{verdict.reason}: the signal that opened it cleared",
            )
            return Decision(state, (transition,), Outcome.RESOLVED, verdict)
        if state.waiting is not None and queueing.clears(state.waiting, signal, at):
            why = f"{verdict.reason}: the queued proposal {state.waiting.remediation.id} dropped"
            return Decision(queueing.drop(state), (), Outcome.UNQUEUED, _with_reason(verdict, why))
        return _linked(state, linked, signal, verdict, now)

    if current is not None:
        if not is_failing(signal) or (
            len(current.remediation.signals) >= config.max_signals_per_remediation
        ):
            return _linked(state, linked, signal, verdict, now)
        attached = _attach(linked or current.remediation, signal)
        state, transition = record_change(
            state,
            attached,
            Event.ATTACH_SIGNAL,
            now=now,
            actor=SYSTEM_PRINCIPAL,
            reason=f"correlated {signal_ref(signal).kind.value} {key}: {verdict.reason}",
        )
        transitions = [transition]
        upgraded = _upgrade(state, verdict, now, config.policy)
        if upgraded is not None:
            state, upgrade = upgraded
            transitions.append(upgrade)
        return Decision(state, tuple(transitions), Outcome.ATTACHED, verdict)

    if verdict.action is not Action.OPEN or verdict.mode is None:
        return Decision(state, (), Outcome.RECORDED, verdict)
    return _open_if_allowed(state, signal, key, at, verdict, now, config, cluster)


def _linked(
    state: InstanceState,
    linked: Remediation | None,
    signal: HealthSignal,
    verdict: Verdict,
    now: datetime,
) -> Decision:
    """Recorded, and when it was an alert on the open remediation, linked to it."""
    if linked is None:
        return Decision(state, (), Outcome.RECORDED, verdict)
    what = "resolved" if signal_ref(signal).status.endswith("RESOLVED") else "linked"
    state, transition = record_change(
        state,
        linked,
        Event.LINK_ALERT,
        now=now,
        actor=SYSTEM_PRINCIPAL,
        reason=f"alert {what}: {verdict.reason}",
    )
    return Decision(state, (transition,), Outcome.RECORDED, verdict)


@dataclass(slots=True)
class _Attempt:
    """A failing signal a rule would open a remediation for, on its way through the
    safety checks. A check may leave its mark on ``state`` (a debounce strike) or raise
    ``verdict``'s mode (escalation) and let the attempt go on."""

    state: InstanceState
    signal: HealthSignal
    key: str
    at: datetime
    verdict: Verdict
    now: datetime
    config: CorrelationConfig
    cluster: ClusterView | None
    #: A SUCCEEDED repair that showed no health in time: escalate at once.
    unverified: Verification | None

    @property
    def policy(self) -> Policy:
        return self.config.policy

    @property
    def mode(self) -> RemediationMode:
        return self.verdict.mode or self.policy.fallback_mode


def _open_if_allowed(
    state: InstanceState,
    signal: HealthSignal,
    key: str,
    at: datetime,
    verdict: Verdict,
    now: datetime,
    config: CorrelationConfig,
    cluster: ClusterView | None,
) -> Decision:
    """A failing signal a rule would open a remediation for: the safety rules decide, in
    the order of :data:`_CHECKS`; the first that decides ends it. Past them all, the
    cluster's admission (blast radius, domains, budget, pause, queue) has the last word."""
    attempt = _Attempt(
        state, signal, key, at, verdict, now, config, cluster, verification.armed(state)
    )
    for check in _CHECKS:
        decided = check(attempt)
        if decided is not None:
            return decided
    return _admit(attempt)


def _opted_out(attempt: _Attempt) -> Decision | None:
    opt = attempt.state.opt_out
    if opt is None:
        return None
    why = f"instance opted out by {opt.by}: {opt.reason}"
    return _held(attempt.state, attempt.verdict, why, BlockReason.OPT_OUT)


def _cooling_down(attempt: _Attempt) -> Decision | None:
    """Nothing new opens for a while after a remediation ended; an unverified repair
    escalates past the cooldown (and the debounce)."""
    state, policy = attempt.state, attempt.policy
    last = state.past[0] if state.past else None
    ended = state.cooldown_from or (last.end_time if last is not None else None)
    if attempt.unverified is not None or last is None or ended is None:
        return None
    if attempt.at >= ended + policy.cooldown:
        return None
    why = f"cooldown after {last.id} until {format_timestamp(ended + policy.cooldown)}"
    return _held(state, attempt.verdict, why, BlockReason.COOLDOWN)


def _debounced(attempt: _Attempt) -> Decision | None:
    """A rule with a debounce counts failing signals within its window first."""
    rule = attempt.policy.rule(attempt.verdict.rule)
    if attempt.unverified is not None or rule is None or rule.debounce_count <= 1:
        return None
    state, at = attempt.state, attempt.at
    horizon = at - rule.debounce_window
    recent = [t for t in state.strikes.get(rule.name, []) if t >= horizon] + [at]
    attempt.state = state.model_copy(update={"strikes": {**state.strikes, rule.name: recent}})
    if len(recent) >= rule.debounce_count:
        return None
    reason = (
        f"{attempt.verdict.reason}: {len(recent)} of {rule.debounce_count} failing signals "
        f"within {rule.debounce_window_minutes:g} min [rule {rule.name}]"
    )
    return Decision(attempt.state, (), Outcome.DEBOUNCED, _with_reason(attempt.verdict, reason))


def _held_for_human(attempt: _Attempt) -> Decision | None:
    """Too many remediations carried out on the instance lately: left to a human (one
    HELD_FOR_HUMAN event per window)."""
    state, at = attempt.state, attempt.at
    hold = attempt.policy.hold_for_human
    window = timedelta(hours=hold.window_hours)
    lifted = state.hold_lifted.at if state.hold_lifted is not None else None
    carried_out = [
        p
        for p in state.past
        if p.start_time is not None
        and p.start_time >= at - window
        and (lifted is None or p.start_time > lifted)
    ]
    if len(carried_out) < hold.max_remediations:
        return None
    reason = (
        f"{len(carried_out)} remediations carried out within {hold.window_hours:g} h: "
        "left to a human"
    )
    events: tuple[PolicyEvent, ...] = ()
    if state.held_for_human_at is None or state.held_for_human_at < at - window:
        kind = PolicyEventKind.HELD_FOR_HUMAN
        event = _policy_event(
            state, kind, attempt.key, attempt.signal, attempt.verdict, reason, attempt.now
        )
        events = (event,)
        state = state.model_copy(update={"held_for_human_at": at})
    held = _held(state, attempt.verdict, reason, BlockReason.HELD_FOR_HUMAN)
    return Decision(held.state, (), held.outcome, held.verdict, events, blocked=held.blocked)


def _escalated(attempt: _Attempt) -> Decision | None:
    """Raise the mode: at once after an unverified repair, or when the same problem
    came back within the escalation window. Decides nothing."""
    verdict, mode = attempt.verdict, attempt.mode
    unverified = attempt.unverified
    if unverified is not None:
        mode = mode if heavier(mode, unverified.mode) else next_mode(unverified.mode)
        attempt.verdict = _with_reason(
            Verdict(verdict.action, verdict.rule, verdict.reason, mode),
            f"{verdict.reason}; {unverified.remediation_id} ({_short(unverified.mode)}) "
            "SUCCEEDED but the instance showed no health in time: escalated at once",
        )
        return None
    window = attempt.policy.escalation_window
    previous = _previous_attempt(attempt.state, verdict.rule, attempt.at, window)
    if previous is None or heavier(mode, previous.mode):
        attempt.verdict = Verdict(verdict.action, verdict.rule, verdict.reason, mode)
        return None
    mode = next_mode(previous.mode)
    attempt.verdict = Verdict(verdict.action, verdict.rule, verdict.reason, mode)
    if mode is not verdict.mode:
        attempt.verdict = _with_reason(
            attempt.verdict,
            f"{verdict.reason}; came back after {previous.id} "
            f"({_short(previous.mode)}, {previous.state.value}): escalated",
        )
    return None


def _shadowed(attempt: _Attempt) -> Decision | None:
    """A dry run (service, cluster or rule): publish what would open, once per cooldown."""
    state, verdict, at = attempt.state, attempt.verdict, attempt.at
    if not attempt.policy.shadows(attempt.signal.cluster_id, verdict.rule):
        return None
    seen_at = state.shadowed.get(verdict.rule)
    reason = f"dry run: would open {_short(attempt.mode)}: {verdict.reason} [rule {verdict.rule}]"
    if seen_at is not None and at < seen_at + attempt.policy.cooldown:
        return Decision(state, (), Outcome.SHADOWED, _with_reason(verdict, reason))
    state = state.model_copy(update={"shadowed": {**state.shadowed, verdict.rule: at}})
    kind = PolicyEventKind.SHADOW_OPEN
    event = _policy_event(state, kind, attempt.key, attempt.signal, verdict, reason, attempt.now)
    return Decision(state, (), Outcome.SHADOWED, _with_reason(verdict, reason), (event,))


#: The instance's own safety rules, in order.
_CHECKS = (_opted_out, _cooling_down, _debounced, _held_for_human, _escalated, _shadowed)


def _admit(attempt: _Attempt) -> Decision:
    """The cluster's admission decides (without a cluster view, as in unit tests of the
    instance alone: opened). Refused for room, the proposal waits in the queue."""
    state, signal, verdict, now = attempt.state, attempt.signal, attempt.verdict, attempt.now
    policy, mode, cluster = attempt.policy, attempt.mode, attempt.cluster
    if verdict.rule in state.strikes:
        state = state.model_copy(
            update={"strikes": {k: v for k, v in state.strikes.items() if k != verdict.rule}}
        )
    rid = ids.automated_remediation_id(signal.cluster_id, signal.instance_id, attempt.key)
    if cluster is None:
        state, opened = open_automated(
            state, _automated(rid, signal, mode, verdict, now), policy, now
        )
        return Decision(state, opened, Outcome.OPENED, verdict)
    proposal = Proposal(
        cluster_id=signal.cluster_id,
        instance_id=signal.instance_id,
        remediation_id=rid,
        rule=verdict.rule,
        mode=mode,
        at=attempt.at,
        domains=topology.names(state.domain),
    )
    admission = safety.admit(cluster, proposal, policy, now)
    changed = admission.record if admission.record != cluster.record else None
    if not admission.admitted:
        why = admission.reason
        if admission.blocked in safety.QUEUEABLE:
            build = functools.partial(_automated, rid, signal, mode, verdict, now)
            state, why = queueing.enqueue(state, build, admission, cluster, policy, attempt.at)
        held = _held(state, verdict, why, admission.blocked)
        queued = admission.blocked in safety.QUEUEABLE and state.waiting is not None
        outcome = Outcome.QUEUED if queued else held.outcome
        return Decision(
            held.state, (), outcome, held.verdict, admission.events, changed, blocked=held.blocked
        )
    # Built only once admitted: in a storm most proposals are refused.
    remediation = _automated(rid, signal, mode, verdict, now)
    state, opened = open_automated(queueing.drop(state).admit(attempt.at), remediation, policy, now)
    verdict = _with_reason(verdict, f"{verdict.reason} ({admission.reason})")
    return Decision(state, opened, Outcome.OPENED, verdict, admission.events, changed)


def _automated(
    rid: str, signal: HealthSignal, mode: RemediationMode, verdict: Verdict, now: datetime
) -> Remediation:
    """The automated remediation ``signal`` opens (``rid`` is derived from the signal)."""
    run_id = str(signal.run_id) if isinstance(signal, ActiveHealthCheckRun) else None
    event_id = None if isinstance(signal, ActiveHealthCheckRun) else str(signal.event_id)
    opener = [] if isinstance(signal, ActiveHealthCheckRun) else [alerts.linked_alert(signal, rid)]
    return Remediation(
        id=rid,
        cluster_id=signal.cluster_id,
        instance_id=signal.instance_id,
        instance_name=signal.instance_name,
        mode=mode,
        trigger=RemediationTrigger.AUTOMATED,
        state=RemediationState.PENDING_APPROVAL,
        reason=verdict.reason,
        active_health_check_run_id=run_id,
        passive_health_check_event_id=event_id,
        requested_by=SYSTEM_PRINCIPAL,
        create_time=now,
        update_time=now,
        signals=[signal_ref(signal)],
        rule=verdict.rule,
        linked_alerts=opener,
    )


def _with_reason(verdict: Verdict, reason: str) -> Verdict:
    return Verdict(verdict.action, verdict.rule, reason, verdict.mode)


def _short(mode: RemediationMode) -> str:
    return mode.value.removeprefix("REMEDIATION_MODE_")


def _held(
    state: InstanceState, verdict: Verdict, why: str, blocked: BlockReason | None
) -> Decision:
    reason = f"{verdict.reason}: not opened, {why} [rule {verdict.rule}]"
    return Decision(state, (), Outcome.BLOCKED, _with_reason(verdict, reason), blocked=blocked)


def _clears(remediation: Remediation, signal: HealthSignal, at: datetime, policy: Policy) -> bool:
    """Whether a healthy ``signal`` clears the one that opened a waiting automated remediation.

    Only a signal newer than the opener clears it: an older one arriving late (input may
    come out of order) says nothing about the problem that opened it.
    """
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
    if not (same and healthy and at >= opener.observed_at):
        return False
    within = policy.auto_resolve_within
    return within is None or at - opener.observed_at <= within


def _upgrade(
    state: InstanceState, verdict: Verdict, now: datetime, policy: Policy
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
        changes={
            "mode": verdict.mode,
            "rule": verdict.rule,
            # An approval recorded for the lighter mode does not carry over to this one.
            "approvals": [],
            "approvals_required": 2
            if policy.needs_two(remediation.cluster_id, verdict.mode)
            else None,
        },
    )


def _previous_attempt(
    state: InstanceState, rule: str, at: datetime, window: timedelta
) -> PastRemediation | None:
    """The last remediation of the same problem carried out within ``window`` before ``at``."""
    for past in state.past:
        if past.end_time is None or past.end_time < at - window:
            return None
        if past.rule == rule and past.start_time is not None:
            return past
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
    return PolicyEvent.of(
        kind,
        state.cluster_id,
        state.instance_id,
        cause=key,
        rule=verdict.rule,
        mode=verdict.mode,
        reason=reason,
        at=now,
        signal=signal_ref(signal),
    )


def _remember(
    state: InstanceState, key: str, at: datetime, config: CorrelationConfig
) -> InstanceState:
    watermark = at if state.watermark is None or at > state.watermark else state.watermark
    seen = state.seen.add(key, at, limit=config.dedup_max_ids, horizon=watermark - config.dedup_ttl)
    return state.model_copy(update={"seen": seen, "watermark": watermark})


def _place(
    state: InstanceState, signal: HealthSignal, newest: bool, config: CorrelationConfig
) -> InstanceState:
    """Remember the instance's failure domain (see :mod:`topology`). A signal older than
    the newest one seen (input may come late) says nothing of where the instance is now."""
    keys = config.policy.blast_radius.domains.keys
    if not keys and not state.domain and not state.domain_said:
        return state  # per-domain limits off: nothing to remember
    said = topology.said(keys, state.domain_said, topology.carried(signal) if newest else None)
    mapped = topology.mapped(config.domains, state.cluster_id, state.instance_id)
    domain = topology.resolve(keys, said, mapped)
    if domain == state.domain and said == state.domain_said:
        return state
    return state.model_copy(update={"domain": domain, "domain_said": said})


def _attach(remediation: Remediation, signal: HealthSignal) -> Remediation:
    """The open record with ``signal`` added; fills the seed's empty id field of its kind."""
    update: dict[str, object] = {"signals": [*remediation.signals, signal_ref(signal)]}
    if isinstance(signal, ActiveHealthCheckRun):
        if remediation.active_health_check_run_id is None:
            update["active_health_check_run_id"] = str(signal.run_id)
    elif remediation.passive_health_check_event_id is None:
        update["passive_health_check_event_id"] = str(signal.event_id)
    return remediation.model_copy(update=update)
