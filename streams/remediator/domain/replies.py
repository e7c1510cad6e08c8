"""What a command answers: a record, a list of records, or one of the contract's errors."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from remediator.domain.models import (
    AuditNote,
    DecisionRecord,
    OptOut,
    Remediation,
    RemediationMode,
    StoredIdentifier,
    Timestamp,
    Verification,
)
from remediator.domain.safety import Pause


class ErrorCode(enum.StrEnum):
    """The REST API's error statuses a command can end in."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"


class FreezeView(BaseModel):
    """A change freeze's window (the policy's ``[[freeze]]`` entry), as views show it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    reason: str
    start: Timestamp
    end: Timestamp = Field(description="Exclusive: it holds until the cluster's clock gets here.")
    domains: list[str] = Field(
        default_factory=list, description="Only these failure domains; empty: the whole cluster."
    )
    allow_running: bool = Field(
        default=False, description="Approved remediations still start while it holds."
    )


class QueuedProposal(BaseModel):
    """An automated remediation refused for lack of room, waiting in the cluster's queue."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    remediation_id: str = Field(description="The id it opens with when admitted.")
    mode: RemediationMode
    rule: str | None = None
    since: Timestamp = Field(description="Event time it first queued (its place in line).")
    blocked: str = Field(description="What it waits for: blast_radius, rate_budget, queued.")
    reason: str
    place: int = Field(ge=1, description="1: the next to be opened when there is room.")
    of: int = Field(ge=1, description="Proposals waiting in the cluster.")


class Explanation(BaseModel):
    """Everything the service knows about why an instance's remediations are what they are."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_id: StoredIdentifier
    instance_id: StoredIdentifier
    opt_out: OptOut | None = None
    open_remediation: Remediation | None = None
    cooldown_until: Timestamp | None = Field(
        default=None, description="No automated remediation opens before this (event time)."
    )
    debounce: dict[str, int] = Field(
        default_factory=dict, description="Rule -> failing signals counted so far."
    )
    decisions: list[DecisionRecord] = Field(
        default_factory=list, description="Recent decisions on signals, newest first."
    )
    recent: list[Remediation] = Field(
        default_factory=list, description="Recent closed remediations, newest first."
    )
    last_signal_at: Timestamp | None = Field(
        default=None, description="Event time of the newest signal seen for the instance."
    )
    held_for_human_at: Timestamp | None = Field(
        default=None,
        description="When automated remediation was last held for a human (a "
        "HELD_FOR_HUMAN event); cleared when an operator lifts the hold.",
    )
    hold_lifted: OptOut | None = Field(
        default=None, description="The last lifting of such a hold, by whom and why."
    )
    audit: list[AuditNote] = Field(
        default_factory=list,
        description="The newest API calls about the instance, done or refused (by an "
        "authenticated caller), oldest first: the audit topic has every one.",
    )
    queued: QueuedProposal | None = Field(
        default=None,
        description="A proposal refused for lack of room, waiting in the cluster's "
        "admission queue, with its place.",
    )
    freeze: FreezeView | None = Field(
        default=None,
        description="The change freeze holding this instance at the cluster's clock, if one "
        "does: no automated remediation opens here, and approved ones wait, until it ends.",
    )
    verification: Verification | None = Field(
        default=None,
        description="Whether the instance showed health after its last SUCCEEDED "
        "remediation: PENDING until its deadline, VERIFIED (by which signal) or FAILED "
        "(then its next failing signal escalates at once, unless it recovered since).",
    )


class DomainSafety(BaseModel):
    """One failure domain of a cluster, as the safety view shows it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    domain: str = Field(description='Key and value, e.g. "rack=r12".')
    known_instances: int
    unhealthy_instances: list[str] = Field(
        description="Its instances with an open automated remediation."
    )
    limit: int = Field(description="Open automated remediations allowed at once in it.")
    resume_at: int = Field(description="Once tripped, its new ones resume at this many or fewer.")
    tripped_at: Timestamp | None = Field(
        default=None, description="Set while its limit holds its instances' new ones back."
    )


class SafetyView(BaseModel):
    """A cluster's safety state, as ``GET …/clusters/{c}/safety`` shows it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_id: StoredIdentifier
    paused: Pause | None = Field(description="Set while automated remediation is paused.")
    tripped_at: Timestamp | None = Field(
        description="Set while the blast-radius limit holds new automated remediations back."
    )
    known_instances: int
    unhealthy_instances: list[str] = Field(
        description="Instances with an open automated remediation (in progress counts)."
    )
    limit: int = Field(description="Open automated remediations allowed at once.")
    resume_at: int = Field(description="Once tripped, new ones resume at this many or fewer.")
    opened_last_hour: int = Field(
        description="Automated remediations admitted in the hour before as_of (event time)."
    )
    rate_budget_per_hour: int | None
    running: list[str] = Field(
        default_factory=list, description="Instances whose remediation is RUNNING."
    )
    queued: list[str] = Field(
        default_factory=list,
        description="Instances whose PENDING remediation waits for a slot, first in line first.",
    )
    waiting: list[str] = Field(
        default_factory=list,
        description="Instances whose proposal was refused for lack of room and waits in the "
        "admission queue, first in line first.",
    )
    as_of: Timestamp | None = Field(
        default=None, description="The newest event time seen in the cluster: the view's clock."
    )
    opted_out: dict[str, OptOut] = Field(
        default_factory=dict,
        description="Instances taken out of automated remediation, by instance id.",
    )
    domains: list[DomainSafety] = Field(
        default_factory=list,
        description="Per failure domain (the policy's blast_radius.domains.keys), by name: "
        "its counts, limit and whether it is tripped. Empty when the policy sets no keys.",
    )
    freezes: list[FreezeView] = Field(
        default_factory=list,
        description="The change freezes holding in the cluster at as_of (the cluster's "
        "event time), whole cluster or some of its failure domains.",
    )
    next_freezes: list[FreezeView] = Field(
        default_factory=list,
        description="The next window of each freeze the policy has for the cluster, soonest first.",
    )


class ClusterSummary(BaseModel):
    """One cluster as ``GET /v1/compute/clusters`` lists it: what an operator scanning the
    fleet wants first (what is open, what holds automation back)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_id: StoredIdentifier
    known_instances: int
    open_remediations: dict[str, int] = Field(
        default_factory=dict, description="Open remediations by state (only states with some)."
    )
    paused: Pause | None = Field(
        default=None, description="Set while automated remediation is paused."
    )
    tripped_at: Timestamp | None = Field(
        default=None, description="Set while the blast-radius limit holds new ones back."
    )
    freezes: list[FreezeView] = Field(
        default_factory=list, description="The change freezes holding in the cluster now."
    )
    blast_radius_open: int = Field(
        default=0, description="Instances with an open automated remediation."
    )
    blast_radius_limit: int = Field(default=0, description="How many of those are allowed.")
    opened_last_hour: int = Field(default=0, description="Automated ones admitted (event time).")
    rate_budget_per_hour: int | None = None
    as_of: Timestamp | None = Field(
        default=None, description="The newest event time seen in the cluster."
    )


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    remediation: Remediation | None = None
    remediations: list[Remediation] | None = None
    explanation: Explanation | None = None
    safety: SafetyView | None = None
    clusters: list[ClusterSummary] | None = Field(
        default=None, description="CLUSTERS: the clusters the answering partition holds."
    )
    created: bool = False
    error_code: ErrorCode | None = None
    error_message: str | None = None
    truncated: bool = Field(
        default=False,
        description="LIST: remediations was cut short to fit the reply's byte budget; "
        "more records follow its last one.",
    )

    @property
    def ok(self) -> bool:
        return self.error_code is None


class RememberedReply(BaseModel):
    """A reply as kept in an instance's state for replays: the record by id only."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    remediation_id: str | None = None
    created: bool = False
    error_code: ErrorCode | None = None
    error_message: str | None = None
