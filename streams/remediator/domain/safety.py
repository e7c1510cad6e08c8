"""Cluster-wide safety: the blast-radius limit, the rate budget and the operator's pause.

An instance's writer decides everything it can alone (rules, debounce, cooldown, …), but
"how many of this cluster's instances are already being remediated" needs one place that
sees the whole cluster: the owner of the key ``safety:{cluster_id}`` on the inbox, which
keeps :class:`ClusterSafety`. It is driven by :class:`AdmissionRequest` messages from the
instances' writers:

- ``REGISTER``: an instance was seen for the first time (it counts towards the cluster's
  size, for the percentage limit);
- ``PROPOSE``: an instance wants to open an automated remediation. The answer, an
  :class:`AdmissionVerdict` sent back to the instance, admits it (the instance then opens
  it and counts as unhealthy here) or refuses it with the reason;
- ``CLOSE``: the instance's automated remediation ended (or its proposal was dropped): it
  no longer counts as unhealthy.

Rules, in order: a paused cluster admits nothing; a tripped cluster admits nothing until
the unhealthy count falls to the lower mark (hysteresis), which resumes it; a proposal
that would go past the limit trips it; the hourly budget refuses beyond it. Tripping,
resuming, pausing and resuming from a pause are :class:`PolicyEvent` values for alerting.

Everything is idempotent under redelivery: a PROPOSE already answered is answered the same
way again (remembered, bounded), REGISTER and CLOSE work on sets. Manual remediations never
come here: an operator can always act.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from . import ids
from .models import (
    Identifier,
    PolicyEvent,
    PolicyEventKind,
    RemediationMode,
    RemediationTransition,
    RemediationTrigger,
    Timestamp,
)
from .policy import Policy

#: Answers remembered per cluster, to answer a repeated PROPOSE the same way.
MAX_REMEMBERED = 256


class Pause(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    by: str
    at: Timestamp


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    admitted: bool
    reason: str


class ClusterSafety(BaseModel):
    """One cluster's safety state: one table value under ``safety:{cluster_id}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_id: Identifier
    instances: list[str] = Field(default_factory=list, description="Known instances, sorted.")
    unhealthy: list[str] = Field(
        default_factory=list, description="Instances with an open automated remediation."
    )
    counted: dict[str, str] = Field(
        default_factory=dict,
        description="Unhealthy instance -> the remediation it is counted for (a CLOSE of "
        "another one, late, does not uncount it).",
    )
    tripped_at: Timestamp | None = Field(
        default=None, description="When the blast-radius limit tripped; None: not tripped."
    )
    opened: list[Timestamp] = Field(
        default_factory=list, description="Event times of recent admissions (rate budget)."
    )
    paused: Pause | None = None
    answers: dict[str, Answer] = Field(
        default_factory=dict, description="Remediation id -> the answer given to it."
    )


class AdmissionKind(enum.StrEnum):
    REGISTER = "REGISTER"
    PROPOSE = "PROPOSE"
    CLOSE = "CLOSE"


class AdmissionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AdmissionKind
    cluster_id: Identifier
    instance_id: Identifier
    remediation_id: str | None = None
    rule: str | None = None
    mode: RemediationMode | None = None
    at: Timestamp = Field(description="Event time of the signal behind the request.")


class AdmissionVerdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation_id: str
    cluster_id: Identifier
    instance_id: Identifier
    admitted: bool
    reason: str


class ControlKind(enum.StrEnum):
    PAUSE = "PAUSE"
    RESUME = "RESUME"


@dataclass(frozen=True, slots=True)
class Admission:
    safety: ClusterSafety
    verdicts: tuple[AdmissionVerdict, ...] = ()
    events: tuple[PolicyEvent, ...] = ()


def handle(
    safety: ClusterSafety | None, request: AdmissionRequest, policy: Policy, now: datetime
) -> Admission:
    """Apply one request from an instance; see the module docstring."""
    if safety is None:
        safety = ClusterSafety(cluster_id=request.cluster_id)
    instance = request.instance_id
    if request.kind is AdmissionKind.REGISTER:
        return Admission(_register(safety, instance))
    if request.kind is AdmissionKind.CLOSE:
        if instance not in safety.unhealthy:
            return Admission(safety)
        counted_for = safety.counted.get(instance)
        if counted_for is not None and counted_for != request.remediation_id:
            return Admission(safety)  # a late CLOSE of an earlier one: the count is newer
        safety = safety.model_copy(
            update={
                "unhealthy": [i for i in safety.unhealthy if i != instance],
                "counted": {i: r for i, r in safety.counted.items() if i != instance},
            }
        )
        return _maybe_resume(safety, policy, now, f"close/{request.remediation_id}")

    rid = request.remediation_id or ""
    remembered = safety.answers.get(rid)
    if remembered is not None:
        return Admission(safety, (_verdict(request, remembered),))
    safety = _register(safety, instance)
    resumed = _maybe_resume(safety, policy, now, f"propose/{rid}")
    safety, events = resumed.safety, list(resumed.events)
    answer, safety, tripped = _decide(safety, request, policy, now)
    events.extend(tripped)
    answers = {**safety.answers, rid: answer}
    if len(answers) > MAX_REMEMBERED:
        answers = dict(list(answers.items())[-MAX_REMEMBERED:])
    safety = safety.model_copy(update={"answers": answers})
    return Admission(safety, (_verdict(request, answer),), tuple(events))


def _decide(
    safety: ClusterSafety, request: AdmissionRequest, policy: Policy, now: datetime
) -> tuple[Answer, ClusterSafety, list[PolicyEvent]]:
    instance = request.instance_id
    if safety.paused is not None:
        pause = safety.paused
        return _no(f"cluster paused by {pause.by}: {pause.reason}"), safety, []
    if instance in safety.unhealthy:
        # Already counted (a proposal after a dropped one, say): no change in the count,
        # which now stands for this remediation.
        counted = {**safety.counted, instance: request.remediation_id or ""}
        return (
            Answer(admitted=True, reason="already counted"),
            safety.model_copy(update={"counted": counted}),
            [],
        )
    known = len(safety.instances)
    limit = policy.blast_radius.limit(known)
    if safety.tripped_at is not None:
        resume = policy.blast_radius.resume_at(known)
        return (
            _no(
                f"blast radius: {len(safety.unhealthy)} of {known} instances unhealthy, "
                f"tripped at {limit}; resumes at {resume} or fewer"
            ),
            safety,
            [],
        )
    if len(safety.unhealthy) + 1 > limit:
        safety = safety.model_copy(update={"tripped_at": now})
        reason = (
            f"blast radius tripped: {len(safety.unhealthy)} of {known} instances already "
            f"unhealthy, limit {limit} (max_open {policy.blast_radius.max_open}, "
            f"max_percent {policy.blast_radius.max_percent:g}); no new automated "
            "remediations until they fall to "
            f"{policy.blast_radius.resume_at(known)}"
        )
        event = _event(
            safety,
            PolicyEventKind.BLAST_RADIUS_TRIPPED,
            reason,
            now,
            f"propose/{request.remediation_id}",
            request,
        )
        return _no(reason), safety, [event]
    budget = policy.rate_budget_per_hour
    recent = [t for t in safety.opened if t > request.at - timedelta(hours=1)]
    if budget and len(recent) >= budget:
        return (
            _no(f"rate budget: {len(recent)} opened in the last hour, budget {budget}"),
            safety,
            [],
        )
    safety = safety.model_copy(
        update={
            "unhealthy": sorted({*safety.unhealthy, instance}),
            "counted": {**safety.counted, instance: request.remediation_id or ""},
            "opened": [*recent, request.at][-(budget or 1000) :],
        }
    )
    return (
        Answer(admitted=True, reason=f"admitted: {len(safety.unhealthy)} of limit {limit}"),
        safety,
        [],
    )


def _maybe_resume(safety: ClusterSafety, policy: Policy, now: datetime, cause: str) -> Admission:
    if safety.tripped_at is None:
        return Admission(safety)
    known = len(safety.instances)
    resume = policy.blast_radius.resume_at(known)
    if len(safety.unhealthy) > resume:
        return Admission(safety)
    safety = safety.model_copy(update={"tripped_at": None})
    reason = (
        f"blast radius resumed: {len(safety.unhealthy)} of {known} instances unhealthy, "
        f"at or below {resume}"
    )
    event = _event(safety, PolicyEventKind.BLAST_RADIUS_RESUMED, reason, now, cause)
    return Admission(safety, (), (event,))


def control(
    safety: ClusterSafety | None,
    cluster_id: str,
    kind: ControlKind,
    *,
    reason: str,
    principal: str,
    now: datetime,
    cause: str,
) -> Admission:
    """An operator pauses or resumes automated remediation in the cluster.

    ``cause`` (the command's id) makes the event's id stable on a replay.
    """
    if safety is None:
        safety = ClusterSafety(cluster_id=cluster_id)
    if kind is ControlKind.PAUSE:
        pause = Pause(reason=reason, by=principal, at=now)
        safety = safety.model_copy(update={"paused": pause})
        text = f"paused by {principal}: {reason}"
        event = _event(safety, PolicyEventKind.CLUSTER_PAUSED, text, now, cause)
        return Admission(safety, (), (event,))
    if safety.paused is None:
        return Admission(safety)
    safety = safety.model_copy(update={"paused": None})
    text = f"resumed by {principal}" + (f": {reason}" if reason else "")
    event = _event(safety, PolicyEventKind.CLUSTER_RESUMED, text, now, cause)
    return Admission(safety, (), (event,))


def requests_for(transitions: list[RemediationTransition]) -> list[AdmissionRequest]:
    """CLOSE for every automated remediation that ended."""
    return [
        AdmissionRequest(
            kind=AdmissionKind.CLOSE,
            cluster_id=t.remediation.cluster_id,
            instance_id=t.remediation.instance_id,
            remediation_id=t.remediation_id,
            at=t.occurred_at,
        )
        for t in transitions
        if t.to_state.is_terminal
        and t.from_state is not None
        and not t.from_state.is_terminal
        and t.remediation.trigger is RemediationTrigger.AUTOMATED
    ]


def _register(safety: ClusterSafety, instance: str) -> ClusterSafety:
    if instance in safety.instances:
        return safety
    return safety.model_copy(update={"instances": sorted({*safety.instances, instance})})


def _no(reason: str) -> Answer:
    return Answer(admitted=False, reason=reason)


def _verdict(request: AdmissionRequest, answer: Answer) -> AdmissionVerdict:
    return AdmissionVerdict(
        remediation_id=request.remediation_id or "",
        cluster_id=request.cluster_id,
        instance_id=request.instance_id,
        admitted=answer.admitted,
        reason=answer.reason,
    )


def _event(
    safety: ClusterSafety,
    kind: PolicyEventKind,
    reason: str,
    now: datetime,
    cause: str,
    request: AdmissionRequest | None = None,
) -> PolicyEvent:
    return PolicyEvent(
        event_id=ids.policy_event_id(safety.cluster_id, "-", kind.value, cause),
        kind=kind,
        cluster_id=safety.cluster_id,
        instance_id=request.instance_id if request is not None else None,
        rule=request.rule if request is not None else None,
        mode=request.mode if request is not None else None,
        reason=reason,
        occurred_at=now,
    )
