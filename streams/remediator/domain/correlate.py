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
    HealthSignal,
    Identifier,
    Remediation,
    RemediationState,
    RemediationTransition,
    RemediationTrigger,
    Severity,
    SignalKind,
    SignalRef,
    Timestamp,
)
from .policy import Action, Verdict, classify
from .replies import RememberedReply

#: Who the pipeline's own changes are recorded as (``requested_by``, ``actor``).
SYSTEM_PRINCIPAL = "system:remediator"


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    #: How long a signal id is remembered, in event time. Well beyond any redelivery.
    dedup_ttl: timedelta = timedelta(days=7)
    #: At most this many signals are listed on one remediation; later ones still count
    #: as seen but are not attached.
    max_signals_per_remediation: int = 100
    #: Closed remediations kept per instance, newest first.
    max_closed: int = 50


DEFAULT_CONFIG = CorrelationConfig()


class OpenRemediation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation: Remediation
    sequence: int = Field(ge=1, description="Sequence of its last published transition.")


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

    @classmethod
    def empty(cls, cluster_id: str, instance_id: str) -> InstanceState:
        return cls(cluster_id=cluster_id, instance_id=instance_id)


class Outcome(enum.StrEnum):
    DUPLICATE = "DUPLICATE"  # seen before: nothing changes
    STALE = "STALE"  # older than the dedup horizon: ignored
    RECORDED = "RECORDED"  # remembered, no remediation involved
    OPENED = "OPENED"  # opened a new remediation
    ATTACHED = "ATTACHED"  # attached to the open remediation


@dataclass(frozen=True, slots=True)
class Decision:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    outcome: Outcome
    verdict: Verdict | None = None


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
    verdict = classify(signal)
    current = state.open

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
        return Decision(state, (transition,), Outcome.ATTACHED, verdict)

    if verdict.action is not Action.OPEN or verdict.mode is None:
        return Decision(state, (), Outcome.RECORDED, verdict)

    remediation = Remediation(
        id=ids.automated_remediation_id(signal.cluster_id, signal.instance_id, key),
        cluster_id=signal.cluster_id,
        instance_id=signal.instance_id,
        instance_name=signal.instance_name,
        mode=verdict.mode,
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
    )
    state, transition = record_creation(
        state,
        remediation,
        Event.CREATE_AUTOMATED,
        now=now,
        actor=SYSTEM_PRINCIPAL,
        reason=f"{verdict.reason} [rule {verdict.rule}]",
    )
    return Decision(state, (transition,), Outcome.OPENED, verdict)


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
        new_state = state.model_copy(update={"open": None, "closed": closed})
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
