"""Post-repair verification: a SUCCEEDED remediation must be seen to have worked.

The control plane saying that every step is done means the VM was rebooted or replaced,
not that the fault is gone. So after a remediation SUCCEEDS the instance must show health
within its rule's ``verify_within_minutes`` (default 30; 0: no verification): a passing
active run, or the alert that opened the remediation (or one that failed it while it was
open) resolved, with an event time after the success. Then it is VERIFIED. If the
deadline passes first it is FAILED: a ``VERIFICATION_FAILED`` policy event, the
remediation's summary in the instance's record notes it, and the instance's next failing
signal escalates at once (:func:`armed`, applied in :mod:`correlate`): the next heavier
mode, without waiting for debounce or the cooldown.

Only the deadline fails a verification. A failing signal inside the window does not: a
node coming back from a reboot may raise an alert or two before it settles, and the
window is there to let it show health. Such a signal is decided by the ordinary rules
(the cooldown usually holds it); a later passing run still verifies the repair.

Decided on event time, like approval expiry (:mod:`expiry`): the deadline is checked
against the instance's own signal when one arrives (:func:`observe`, before the signal is
decided, so that a failing signal past the deadline is the one that escalates) and
against the cluster's newest event time whenever the pipeline settles the cluster
(:func:`due`). Either way the failure is stamped with the deadline and its event's id
derives from the remediation's id, so whichever path decides it, and however often (a
replay after a crash), the record and the event are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    HealthSignal,
    PolicyEvent,
    PolicyEventKind,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTransition,
    SignalKind,
    Verification,
    VerificationState,
    format_timestamp,
)
from .policy import Policy
from .state import InstanceState

V = VerificationState

#: Alert names kept on a verification: the opener and the first few that failed it.
MAX_ALERTS = 10


@dataclass(frozen=True, slots=True)
class Failed:
    state: InstanceState
    event: PolicyEvent


def begin(
    state: InstanceState,
    transitions: Sequence[RemediationTransition],
    policy: Policy,
    clock: datetime | None = None,
) -> InstanceState:
    """Start verifying the remediation that just SUCCEEDED among ``transitions``, if any.

    Health counts from the later of the success and the newest event time seen for the
    instance (the cooldown's clock too): a signal the instance sent before the success
    was known cannot show that it worked. The deadline is the window after that, or after
    the cluster's newest event time ``clock`` if it is later: the deadline is checked on
    the cluster's clock, and an instance must get its whole window whatever the clocks of
    the others. EVICT_WITHOUT_REPLACEMENT is not verified: nothing is left to show health.
    """
    done = next((t for t in transitions if t.to_state is RemediationState.SUCCEEDED), None)
    if done is None:
        return state
    remediation = done.remediation
    window = policy.verify_within(remediation.rule)
    if window is None or remediation.mode is RemediationMode.EVICT_WITHOUT_REPLACEMENT:
        return state
    ended = remediation.end_time or done.occurred_at
    since = ended if state.watermark is None else max(ended, state.watermark)
    opens = since if clock is None else max(since, clock)
    note = Verification(
        remediation_id=remediation.id,
        rule=remediation.rule,
        mode=remediation.mode,
        since=since,
        deadline=opens + window,
        alerts=_alerts(remediation),
    )
    return _noted(state, note)


def pending(state: InstanceState | None) -> bool:
    """Waiting for the instance to show health (what the deadline may fail)."""
    return (
        state is not None
        and state.verification is not None
        and state.verification.state is V.PENDING
    )


def due(state: InstanceState, clock: datetime) -> Failed | None:
    """Fail the instance's pending verification if its deadline passed at ``clock``."""
    note = state.verification
    if note is None or note.state is not V.PENDING or clock < note.deadline:
        return None
    failed = note.model_copy(update={"state": V.FAILED, "at": note.deadline})
    shown = "no passing active run" + (
        f" and no resolution of {', '.join(note.alerts)}" if note.alerts else ""
    )
    reason = (
        f"remediation {note.remediation_id} ({_short(note.mode)}) succeeded at "
        f"{format_timestamp(note.since)} but the instance showed no health by "
        f"{format_timestamp(note.deadline)} ({shown}): its next failing signal escalates "
        "at once"
    )
    event = PolicyEvent.of(
        PolicyEventKind.VERIFICATION_FAILED,
        state.cluster_id,
        state.instance_id,
        cause=note.remediation_id,
        rule=note.rule,
        mode=note.mode,
        reason=reason,
        at=note.deadline,
    )
    return Failed(_noted(state, failed), event)


def observe(
    state: InstanceState, signal: HealthSignal, key: str, at: datetime
) -> tuple[InstanceState, tuple[PolicyEvent, ...]]:
    """What one new signal of the instance (``key``, event time ``at``) does to its
    verification: past the deadline it fails it first; health shown after the success
    verifies a pending one, or marks a failed one recovered (it disarms the escalation).
    """
    events: tuple[PolicyEvent, ...] = ()
    failed = due(state, at)
    if failed is not None:
        state, events = failed.state, (failed.event,)
    note = state.verification
    if note is None or at < note.since or not shows_health(note, signal):
        return state, events
    if note.state is V.PENDING:
        verified = note.model_copy(update={"state": V.VERIFIED, "at": at, "by": key})
        return _noted(state, verified), events
    if note.state is V.FAILED and note.recovered_by is None:
        recovered = note.model_copy(update={"recovered_by": key, "recovered_at": at})
        return _noted(state, recovered), events
    return state, events


def shows_health(note: Verification, signal: HealthSignal) -> bool:
    """A passing active run (any test), or one of the verification's alerts resolved."""
    if isinstance(signal, ActiveHealthCheckRun):
        return signal.result is ActiveTestResult.PASSED
    return signal.status is AlertStatus.RESOLVED and signal.alert_name in note.alerts


def armed(state: InstanceState) -> Verification | None:
    """The failed verification the instance's next failing signal escalates from.

    Armed from the failure until a remediation opens again on the instance (it is then
    no longer the last one) or the instance shows health after all (``recovered_by``).
    """
    note = state.verification
    if note is None or note.state is not V.FAILED or note.recovered_by is not None:
        return None
    if state.open is not None or not state.past or state.past[0].id != note.remediation_id:
        return None
    return note


def _noted(state: InstanceState, note: Verification) -> InstanceState:
    """``state`` with ``note``, and the remediation's summary in ``past`` noting its state."""
    past = [
        p.model_copy(update={"verification": note.state}) if p.id == note.remediation_id else p
        for p in state.past
    ]
    return state.model_copy(update={"verification": note, "past": past})


def _alerts(remediation: Remediation) -> list[str]:
    """The alerts that opened or failed the remediation (their signals are attached)."""
    names: list[str] = []
    for ref in remediation.signals:
        if ref.kind is SignalKind.PASSIVE_EVENT and ref.name not in names:
            names.append(ref.name)
    return names[:MAX_ALERTS]


def _short(mode: RemediationMode) -> str:
    return mode.value.removeprefix("REMEDIATION_MODE_")
