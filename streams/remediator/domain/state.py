"""What the service keeps about one instance, and the one way its remediations change.

:class:`InstanceState` is the *hot* record: everything a decision on the instance needs,
kept small and bounded so that it can be held decoded in memory for a whole fleet and
re-encoded on every change (state stays bounded whatever the fleet's history). What only
a reader needs lives elsewhere: a closed remediation's full record goes to the archive,
the decisions behind ``explain`` to their own log (see ``remediator.pipeline.store``);
the hot record keeps a short summary of recent remediations (:class:`PastRemediation`)
for the policy's cooldown, escalation and hold-for-human rules.

:func:`record_creation` and :func:`record_change` are the only ways a remediation opens or
moves: they apply the lifecycle table and return the transition to publish. A terminal
move closes the remediation: the instance is free again (invariant 1) and the
transition carries the full final record for the archive.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from . import budget, ids, lifecycle
from .dedup import RecentIds
from .lifecycle import Event
from .models import (
    AuditNote,
    OptOut,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTransition,
    RemediationTrigger,
    StoredIdentifier,
    Timestamp,
    Verification,
    VerificationState,
)
from .replies import RememberedReply

#: Summaries of past remediations kept per instance (newest first). The policy looks at
#: the last few only: cooldown (the newest), escalation, hold-for-human (a day's worth).
MAX_PAST = 20
#: Automated admissions remembered per instance, for the cluster's hourly budget.
MAX_ADMITTED = 10
#: API calls remembered per instance for its timeline (the audit topic has them all).
MAX_AUDIT_NOTES = 20


class OpenRemediation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation: Remediation
    sequence: int = Field(ge=1, description="Sequence of its last published transition.")


class PastRemediation(BaseModel):
    """What the policy needs to know of a remediation that ended."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    rule: str | None = None
    mode: RemediationMode
    trigger: RemediationTrigger
    state: RemediationState
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    #: For a SUCCEEDED one: whether the instance showed health after it (issue 13).
    verification: VerificationState | None = None

    @classmethod
    def of(cls, record: Remediation) -> PastRemediation:
        return cls(
            id=record.id,
            rule=record.rule,
            mode=record.mode,
            trigger=record.trigger,
            state=record.state,
            start_time=record.start_time,
            end_time=record.end_time,
        )


class WaitingProposal(BaseModel):
    """An automated remediation the cluster refused for lack of room (blast radius, rate
    budget), waiting in the cluster's queue to be opened when there is room."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    remediation: Remediation = Field(
        description="What opens when admitted: built from the instance's newest failing "
        "signal (a newer one replaces it), stamped again when it opens."
    )
    since: Timestamp = Field(description="Event time it first queued: its place in line.")
    at: Timestamp = Field(description="Event time of the signal behind the proposal.")
    blocked: str = Field(description="Why it waits: blast_radius, rate_budget or queued.")
    reason: str


class InstanceState(BaseModel):
    """The hot record of one instance: one value of the ``state`` table."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_id: StoredIdentifier
    instance_id: StoredIdentifier
    seen: RecentIds = Field(
        default_factory=RecentIds, description="The most recent signal ids (dedup)."
    )
    watermark: Timestamp | None = Field(
        default=None, description="Newest event time seen for the instance."
    )
    open: OpenRemediation | None = None
    # Addition (issue 18): see domain/budget.py.
    open_bytes: int | None = Field(
        default=None,
        description="An upper bound of the open remediation's serialized size: the record "
        "is measured only when this passes its budget. None: not known (measured next).",
    )
    past: list[PastRemediation] = Field(
        default_factory=list, description="Recent remediations that ended, newest first."
    )
    cooldown_from: Timestamp | None = Field(
        default=None, description="When the last remediation ended, for the cooldown."
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
    hold_lifted: OptOut | None = Field(
        default=None,
        description="An operator lifted the hold: remediations started before it no longer "
        "count towards hold_for_human.",
    )
    shadowed: dict[str, Timestamp] = Field(
        default_factory=dict, description="Rule -> last dry-run open (shadow mode)."
    )
    waiting: WaitingProposal | None = Field(
        default=None, description="A proposal waiting in the cluster's admission queue."
    )
    admitted: list[Timestamp] = Field(
        default_factory=list,
        description="Event times this instance's automated remediations were admitted "
        "(the cluster's hourly budget counts them), oldest first.",
    )
    verification: Verification | None = Field(
        default=None,
        description="The check after the instance's last SUCCEEDED remediation.",
    )
    audit: list[AuditNote] = Field(
        default_factory=list,
        description="The newest API calls about the instance, done or refused, oldest "
        f"first (at most {MAX_AUDIT_NOTES}); every call is on the audit topic.",
    )
    domain: dict[str, str] = Field(
        default_factory=dict,
        description="Its failure domain: key -> value of the policy's domain keys, e.g. "
        '{"rack": "r12"}, from its signals or the mapping file (see domain.topology).',
    )
    domain_said: dict[str, str] = Field(
        default_factory=dict,
        description="The values of those keys its newest signals carried: they win over "
        "the mapping file.",
    )

    @classmethod
    def empty(cls, cluster_id: str, instance_id: str) -> InstanceState:
        return cls(cluster_id=cluster_id, instance_id=instance_id)

    @property
    def key(self) -> str:
        return ids.instance_key(self.cluster_id, self.instance_id)

    def admit(self, at: datetime) -> InstanceState:
        """Remember an automated admission at event time ``at`` (budget bookkeeping)."""
        window_start = at - timedelta(hours=1)
        kept = [t for t in self.admitted if t > window_start][-(MAX_ADMITTED - 1) :]
        return self.model_copy(update={"admitted": sorted([*kept, at])})


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
    remediation, size = budget.fit(remediation, None)
    transition = _transition(None, remediation, 1, event, now, actor, reason)
    opened = OpenRemediation(remediation=remediation, sequence=1)
    return state.model_copy(update={"open": opened, "open_bytes": size}), transition


def record_change(
    state: InstanceState,
    remediation: Remediation,
    event: Event,
    *,
    now: datetime,
    actor: str,
    reason: str,
    changes: dict[str, object] | None = None,
) -> tuple[InstanceState, RemediationTransition]:
    """Apply ``event`` to the instance's open remediation and return the transition.

    ``remediation`` is the open record, possibly with extra changes already made to it
    (an attached signal). Raises :class:`lifecycle.IllegalTransition` and changes nothing
    when the move is not allowed. A terminal state closes the remediation: a summary
    stays in ``past``, the full record travels in the transition (for the archive).
    """
    current = state.open
    if current is None or current.remediation.id != remediation.id:
        raise lifecycle.IllegalTransition(
            remediation.state, event, f"remediation {remediation.id} is not open"
        )
    from_state = current.remediation.state
    updated = lifecycle.apply(remediation, event, now=now, changes=changes)
    # Under its size budget, measured only when it may be near it (domain/budget.py).
    updated, size = budget.fit(
        updated, budget.grown(state.open_bytes, current.remediation, updated)
    )
    sequence = current.sequence + 1
    transition = _transition(from_state, updated, sequence, event, now, actor, reason)
    if updated.state.is_terminal:
        past = [PastRemediation.of(updated), *state.past][:MAX_PAST]
        # The cooldown runs from the later of the service's clock and the newest event
        # time seen: on event time when signals run ahead (a replay, a backlog).
        ended = now if state.watermark is None else max(now, state.watermark)
        new_state = state.model_copy(
            update={"open": None, "open_bytes": None, "past": past, "cooldown_from": ended}
        )
    else:
        new_state = state.model_copy(
            update={
                "open": OpenRemediation(remediation=updated, sequence=sequence),
                "open_bytes": size,
            }
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
