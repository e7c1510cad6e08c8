"""The payloads the outside world sees (topics and REST API), as pydantic models.

Every byte that enters or leaves the service passes through one of these models:
input is parsed straight from bytes with ``Model.model_validate_json(raw)`` and
output is written with :func:`dump_json`. The models are the single source of the
JSON Schema files under ``schemas/`` (``make schemas``).

Rules kept here:
- timestamps are timezone-aware; on output they are RFC 3339 in UTC with a ``Z``;
  on input any explicit offset is accepted and converted to UTC, a naive one is refused;
- unknown extra fields in input are accepted and ignored;
- output records are frozen: a change makes a new record (``model_copy``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from . import bounds, ids
from .bounds import Annotations, Labels, Name, Text


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as the contract requires."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Serialized by pydantic-core itself, which writes a UTC datetime exactly as
# format_timestamp does ("…T12:00:00Z", "…T12:00:00.545000Z") at a fraction of the cost of
# a Python serializer (a few of them per event on the hot path). That relies on every
# Timestamp being UTC: input is converted by the validator, and the code only ever makes
# new ones from the UTC clock, from validated times, or by arithmetic on them
# (test_models checks the output form).
Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def segment_pattern(char: str, not_dot: str) -> str:
    """A regex for one path segment: one or more ``char`` (a character class that admits
    ``.``; ``not_dot`` is the same class without it), except exactly ``.`` and ``..``,
    which URL handling anywhere between a client and a server resolves as "here" and "the
    parent", turning an id into another path. Spelt without look-ahead, which
    pydantic's regex engine lacks, so the JSON Schemas state the rule too."""
    return rf"^(?:{not_dot}{char}*|\.{not_dot}{char}*|\.\.{char}+)$"


# Path segments in keys ("{cluster_id}/{instance_id}") and in the REST API and the control
# plane's URLs: no slash, no whitespace, not "." or "..", so a key always splits back into
# exactly the ids it was made from and a URL always names the resource it was made for.
IDENTIFIER_PATTERN = segment_pattern(r"[^/\s]", r"[^/\s.]")
#: The rule of IDENTIFIER_PATTERN in words, for error messages.
IDENTIFIER_RULE = "an id: no '/' or whitespace, not '.' or '..'"
Identifier = Annotated[str, Field(min_length=1, max_length=253, pattern=IDENTIFIER_PATTERN)]
# What the service's own records and messages about existing instances hold: 0.4 accepted
# "." and ".." as ids, and a record it wrote must still load after an upgrade (the state
# table is read whole at start) and its remediation still finish. Everything that comes in
# from outside (input topics, the REST API's paths, the commands made from them) is an
# Identifier, so no new record gets such an id.
StoredIdentifier = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^/\s]+$")]


class ActiveTestResult(enum.StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class Severity(enum.StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertStatus(enum.StrEnum):
    FIRING = "FIRING"
    RESOLVED = "RESOLVED"


class RemediationMode(enum.StrEnum):
    VM_ONLY = "REMEDIATION_MODE_VM_ONLY"
    HOST_AWARE = "REMEDIATION_MODE_HOST_AWARE"
    EVICT_WITHOUT_REPLACEMENT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"
    REBOOT_VM = "REMEDIATION_MODE_REBOOT_VM"
    #: Added by the provider's SDK 3.1.1: cordons and power-cycles the bare-metal host,
    #: keeping host and node identity. Never an approval override.
    HOST_POWER_CYCLE = "REMEDIATION_MODE_HOST_POWER_CYCLE"


class RemediationTrigger(enum.StrEnum):
    MANUAL = "REMEDIATION_TRIGGER_MANUAL"
    AUTOMATED = "REMEDIATION_TRIGGER_AUTOMATED"


class RemediationState(enum.StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    PENDING = "PENDING"
    #: Added by the provider's SDK 3.1.1, for the modes that cordon the host first.
    QUARANTINING = "QUARANTINING"  # cordoning or preparing the host before remediation
    QUARANTINED = "QUARANTINED"  # the host is cordoned; the remediation goes on
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    AUTO_RESOLVED = "AUTO_RESOLVED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        RemediationState.SUCCEEDED,
        RemediationState.FAILED,
        RemediationState.CANCELLED,
        RemediationState.AUTO_RESOLVED,
    }
)

#: Being carried out through the control plane: they hold one of the cluster's slots.
EXECUTING_STATES = frozenset(
    {
        RemediationState.QUARANTINING,
        RemediationState.QUARANTINED,
        RemediationState.RUNNING,
    }
)


#: What the input schemas say of clipped strings (domain/bounds.py).
_NAME_KEPT = (
    f" Kept up to {bounds.MAX_NAME_CHARS} characters: a longer one is accepted and stored "
    "truncated, ending with …(truncated, N bytes)."
)
_TEXT_KEPT = (
    f" Kept up to {bounds.MAX_TEXT_CHARS} characters: a longer one is accepted and stored "
    "truncated, ending with …(truncated, N bytes)."
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ActiveHealthCheckRun(_Input):
    """One active test on one instance finished."""

    run_id: uuid.UUID = Field(description="Run ID; the same run may be delivered more than once.")
    cluster_id: Identifier
    instance_id: Identifier
    instance_name: Name | None = Field(
        default=None, description=f"Display name of the instance.{_NAME_KEPT}"
    )
    test: Name = Field(
        min_length=1, description=f"e.g. DCGM_DIAG, GPU_BURN, NCCL_SINGLE_NODE.{_NAME_KEPT}"
    )
    result: ActiveTestResult
    started_at: Timestamp | None = None
    completed_at: Timestamp
    message: Text | None = Field(default=None, description=_TEXT_KEPT.strip())
    metrics: dict[str, float] | None = None
    # Addition (issue 13): where the instance sits, for the policy's failure domains.
    labels: Labels | None = Field(
        default=None,
        description='An addition: e.g. {"rack": "r12", "ib_leaf": "leaf-3"}, where the '
        "instance sits (the policy's blast_radius.domains.keys name which count). Kept: "
        f"the first {bounds.MAX_ANNOTATIONS}, keys clipped to "
        f"{bounds.MAX_ANNOTATION_KEY_CHARS} characters, values to {bounds.MAX_NAME_CHARS}.",
    )


class PassiveHealthCheckEvent(_Input):
    """An alert firing or resolving on one instance."""

    event_id: uuid.UUID = Field(description="Event ID; may be delivered more than once.")
    cluster_id: Identifier
    instance_id: Identifier
    instance_name: Name | None = Field(default=None, description=_NAME_KEPT.strip())
    alert_name: Name = Field(
        min_length=1, description=f"e.g. DmesgXidError, NpdReadonlyFilesystem.{_NAME_KEPT}"
    )
    severity: Severity
    status: AlertStatus
    observed_at: Timestamp
    annotations: Annotations | None = Field(
        default=None,
        description='e.g. {"xid": "79", "gpu": "3"}. Kept: the first '
        f"{bounds.MAX_ANNOTATIONS}, keys clipped to {bounds.MAX_ANNOTATION_KEY_CHARS} "
        f"characters, values to {bounds.MAX_ANNOTATION_VALUE_CHARS} (clipped ones end "
        "with …(truncated, N bytes)).",
    )


HealthSignal: TypeAlias = ActiveHealthCheckRun | PassiveHealthCheckEvent


class SignalKind(enum.StrEnum):
    ACTIVE_RUN = "ACTIVE_RUN"
    PASSIVE_EVENT = "PASSIVE_EVENT"


class _Record(BaseModel):
    # Extra fields are ignored, not refused: records only ever gain fields, and a worker
    # of the previous version must still read what a newer one wrote (rolling upgrades).
    model_config = ConfigDict(frozen=True, extra="ignore")


class SignalRef(_Record):
    """A health signal correlated into a remediation (an addition to the seed's record)."""

    kind: SignalKind
    id: str = Field(description="run_id of an active run, event_id of a passive event.")
    name: str = Field(description="The active test or the alert name.")
    status: str = Field(description="The run's result or the alert's severity and status.")
    observed_at: Timestamp


class StepAction(enum.StrEnum):
    """One control-plane step a mode is carried out by (the compute control plane's actions)."""

    REBOOT_VM = "REBOOT_VM"
    DELETE_VM = "DELETE_VM"
    PROVISION_VM = "PROVISION_VM"
    CORDON_HOST = "CORDON_HOST"
    POWER_CYCLE_HOST = "POWER_CYCLE_HOST"
    UNCORDON_HOST = "UNCORDON_HOST"


class OperationState(enum.StrEnum):
    """An operation's state as the compute control plane reports it."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class StepState(enum.StrEnum):
    PLANNED = "PLANNED"  # not started: no call made yet
    RUNNING = "RUNNING"  # recorded as started: the call may have been made
    DONE = "DONE"
    FAILED = "FAILED"


class Operation(_Record):
    """One step of a remediation's execution (an addition to the seed's record).

    ``operation_id`` is deterministic (:func:`remediator.domain.ids.operation_id`) and is
    the control plane's idempotency key: re-posting it after a crash repeats nothing.
    """

    operation_id: str
    action: StepAction
    avoid_current_host: bool = False
    state: StepState = StepState.PLANNED
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    error: str | None = None


class XidEvent(_Record):
    xid_code: str
    count: int
    mnemonic: str = Field(description="The driver's name for the code; empty if unknown.")


class XidAnnotation(_Record):
    events: list[XidEvent]


class SlurmNodeUnavailable(_Record):
    reason: str


class LinkedAlertAnnotation(_Record):
    """The typed reading of a linked alert's annotations (the SDK's shape)."""

    title: str
    description: str
    summary_line: str
    xid: XidAnnotation | None = None
    slurm_node_unavailable: SlurmNodeUnavailable | None = None


class LinkedAlert(_Record):
    """A passive alert linked to a remediation (an addition, the provider's SDK 3.1.1)."""

    passive_health_check_alert_id: str = Field(description="The alert occurrence's event_id.")
    alert_name: str
    severity: Literal["PHC_SEVERITY_INFO", "PHC_SEVERITY_WARNING", "PHC_SEVERITY_CRITICAL"]
    cluster_id: str
    instance_id: str | None = None
    target_vm: str = Field(description="The instance's name, or its id when it has none.")
    started_at: Timestamp = Field(description="When it fired (the FIRING event's time).")
    resolved_at: Timestamp | None = Field(
        default=None, description="When it resolved, if it did while linked."
    )
    annotations: dict[str, str] = Field(default_factory=dict)
    annotation: LinkedAlertAnnotation
    node_remediation_intent_id: str | None = Field(
        default=None, description="The remediation it is linked to."
    )


class Approval(_Record):
    """One person's approval of a remediation that needs two (an addition)."""

    principal: str
    at: Timestamp
    mode: RemediationMode = Field(description="The mode this approval is for.")
    comment: str | None = None


class Remediation(_Record):
    """A node remediation request for one instance: exactly the seed's fields, plus additions."""

    id: str
    cluster_id: StoredIdentifier
    instance_id: StoredIdentifier
    instance_name: str | None = None
    mode: RemediationMode
    trigger: RemediationTrigger
    state: RemediationState
    reason: str | None = None
    active_health_check_run_id: str | None = None
    passive_health_check_event_id: str | None = None
    requested_by: str
    create_time: Timestamp
    reviewed_by: str | None = None
    review_time: Timestamp | None = None
    review_comment: str | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    error_message: str | None = None
    update_time: Timestamp
    # Additions: new fields are optional, so existing readers of the payload are unaffected.
    signals: list[SignalRef] = Field(
        default_factory=list,
        description="Health signals correlated into this remediation, oldest first.",
    )
    operations: list[Operation] = Field(
        default_factory=list,
        description="The control-plane steps, in order; planned when the remediation starts.",
    )
    rule: str | None = Field(
        default=None,
        description="The policy rule that opened an automated remediation (its problem).",
    )
    linked_alerts: list[LinkedAlert] = Field(
        default_factory=list,
        description="Passive alerts that fired on the instance while it was open (the one "
        "that opened it first), resolved ones included; at most 100.",
    )
    # Additions (issue 18): a record is kept under a size budget (domain/budget.py).
    signals_dropped: int = Field(
        default=0,
        ge=0,
        description="An addition: correlated signals dropped from signals to keep the "
        "record under its size budget (the oldest ones; the opening signal and the newest "
        "are always kept).",
    )
    linked_alerts_dropped: int = Field(
        default=0,
        ge=0,
        description="An addition: linked alerts dropped from linked_alerts to keep the "
        "record under its size budget (the oldest ones; the first and the newest are "
        "always kept).",
    )
    # Additions (two-person approval): see domain/commands.py.
    approvals_required: int | None = Field(
        default=None,
        description="An addition: 2 when two different people must approve this "
        "remediation (its mode is one of the policy's two_person_modes); None otherwise.",
    )
    approvals: list[Approval] = Field(
        default_factory=list,
        description="An addition: the approvals recorded so far, oldest first, when two "
        "are required (a manual create of such a mode counts as its requester's).",
    )


class RemediationTransition(_Record):
    """One change of one remediation, as published on ``remediation-transitions``."""

    transition_id: str = Field(description="Unique per (remediation, sequence); stable on re-send.")
    remediation_id: str
    sequence: int = Field(ge=1, description="1 for the creation, then +1 per change, no gaps.")
    from_state: RemediationState | None
    to_state: RemediationState
    occurred_at: Timestamp
    actor: str
    reason: str
    remediation: Remediation
    # Addition: which lifecycle event made the change (e.g. "CREATE_AUTOMATED",
    # "ATTACH_SIGNAL"). A change with from_state == to_state updates an open record.
    event: str | None = None


class OptOut(_Record):
    """An operator took the instance out of automated remediation."""

    reason: str
    by: str
    at: Timestamp


class DecisionRecord(_Record):
    """Why one signal did what it did: the answer to ``explain``."""

    at: Timestamp = Field(description="The signal's event time.")
    signal: SignalRef
    outcome: str
    rule: str | None = None
    reason: str
    remediation_id: str | None = None


class VerificationState(enum.StrEnum):
    """Where the check after a SUCCEEDED remediation stands."""

    PENDING = "PENDING"  # waiting for the instance to show health before the deadline
    VERIFIED = "VERIFIED"  # it did: a passing active run, or the opening alert resolved
    FAILED = "FAILED"  # the deadline passed first (a VERIFICATION_FAILED policy event)


class Verification(_Record):
    """The check that a SUCCEEDED remediation made the instance healthy (an addition):
    kept with the instance, shown by ``explain``."""

    remediation_id: str
    rule: str | None = None
    mode: RemediationMode
    state: VerificationState = VerificationState.PENDING
    since: Timestamp = Field(
        description="When the remediation succeeded (the later of its end and the newest "
        "event time seen for the instance): health must be shown after this."
    )
    deadline: Timestamp = Field(
        description="... and before this: the window after since, or after the cluster's "
        "newest event time when the success came if that was later (the deadline is "
        "checked on the cluster's event time)."
    )
    alerts: list[str] = Field(
        default_factory=list,
        description="The alerts whose resolution shows health: the one that opened the "
        "remediation and any that failed it while open.",
    )
    at: Timestamp | None = Field(
        default=None, description="When it was VERIFIED or FAILED (the deadline, for FAILED)."
    )
    by: str | None = Field(
        default=None,
        description="The signal that verified it (run:<run_id> or event:<event_id>); "
        "None when it FAILED (no signal did: the deadline passed).",
    )
    recovered_by: str | None = Field(
        default=None,
        description="After it FAILED, the first signal that showed health after all: from "
        "then on failing signals are decided by the ordinary rules again.",
    )
    recovered_at: Timestamp | None = Field(default=None, description="That signal's time.")


class PolicyEventKind(enum.StrEnum):
    SHADOW_OPEN = "SHADOW_OPEN"  # dry run: this remediation would have been opened
    HELD_FOR_HUMAN = "HELD_FOR_HUMAN"  # too many remediations of one instance: stopped
    BLAST_RADIUS_TRIPPED = "BLAST_RADIUS_TRIPPED"  # a cluster stopped opening: too many
    BLAST_RADIUS_RESUMED = "BLAST_RADIUS_RESUMED"  # ... and resumed, below the lower mark
    CLUSTER_PAUSED = "CLUSTER_PAUSED"  # an operator paused automated remediation
    CLUSTER_RESUMED = "CLUSTER_RESUMED"
    RATE_BUDGET_EXHAUSTED = "RATE_BUDGET_EXHAUSTED"  # a cluster's hourly budget refused one
    RATE_BUDGET_RESTORED = "RATE_BUDGET_RESTORED"  # ... and has room again (event time)
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"  # a recommendation waited too long: cancelled
    QUEUE_ADMITTED = "QUEUE_ADMITTED"  # a refused proposal waited in the queue, now opened
    VERIFICATION_FAILED = "VERIFICATION_FAILED"  # a SUCCEEDED repair showed no health in time
    APPROVAL_RECORDED = "APPROVAL_RECORDED"  # first of two approvals (two_person_modes)
    FREEZE_STARTED = "FREEZE_STARTED"  # a change freeze holds automated remediation still
    FREEZE_ENDED = "FREEZE_ENDED"  # ... and ended: what waited in the queue may open


class PolicyEvent(_Record):
    """A decision of the safety policy that alerting may page on (an addition to the
    contract), published on ``remediator-policy-events`` keyed like the transitions."""

    event_id: str = Field(description="Stable on re-send: consumers drop repeats by it.")
    kind: PolicyEventKind
    cluster_id: StoredIdentifier
    instance_id: StoredIdentifier | None = None
    rule: str | None = None
    mode: RemediationMode | None = None
    reason: str
    occurred_at: Timestamp
    signal: SignalRef | None = None
    domain: str | None = Field(
        default=None,
        description='The failure domain (e.g. "rack=r12") a BLAST_RADIUS_* event is about; '
        "None: the whole cluster (an addition).",
    )
    freeze: str | None = Field(
        default=None,
        description="The change freeze (its policy name) a FREEZE_* event is about (an addition).",
    )

    @classmethod
    def of(  # noqa: PLR0913 - the event's fields, by name
        cls,
        kind: PolicyEventKind,
        cluster_id: str,
        instance_id: str | None,
        *,
        cause: str,
        reason: str,
        at: datetime,
        rule: str | None = None,
        mode: RemediationMode | None = None,
        signal: SignalRef | None = None,
        domain: str | None = None,
        scope: str | None = None,
        freeze: str | None = None,
    ) -> PolicyEvent:
        """The one way to make a policy event. Its id is derived from the cluster, the
        ``scope`` (the instance by default; ``-`` for a cluster's own events), the kind
        and the ``cause`` (what made it: a signal, a remediation, a proposal), so that a
        replay makes the same id and consumers drop the repeat."""
        where = scope if scope is not None else (instance_id or "-")
        return cls(
            event_id=ids.policy_event_id(cluster_id, where, kind.value, cause),
            kind=kind,
            cluster_id=cluster_id,
            instance_id=instance_id,
            rule=rule,
            mode=mode,
            reason=reason,
            occurred_at=at,
            signal=signal,
            domain=domain,
            freeze=freeze,
        )


class AuditOutcome(enum.StrEnum):
    OK = "OK"
    REFUSED = "REFUSED"  # a 4xx: bad credentials, a right the role lacks, a bad request
    FAILED = "FAILED"  # a 5xx: the service could not answer (the call may be retried)


class AuditRecord(_Record):
    """One mutating API call, done or refused, on ``remediator-audit`` (an addition):
    who (principal and role), what (action and target), the outcome and when."""

    audit_id: str = Field(description="Unique per call (a UUID).")
    occurred_at: Timestamp = Field(description="When the answer was given (wall clock).")
    principal: str | None = Field(
        description="Who called; None when the credentials were missing or unknown."
    )
    role: str | None = Field(description="The token's role (unrestricted: an entry without).")
    action: str = Field(description='What was asked, e.g. "remediation.approve".')
    method: str
    path: str = Field(description="The request path (no query string), clipped.")
    cluster_id: str | None = None
    instance_id: str | None = None
    remediation_id: str | None = None
    mode: RemediationMode | None = Field(
        default=None, description="The mode asked for (create, or an approval override)."
    )
    outcome: AuditOutcome
    status: int = Field(description="The HTTP status answered.")
    error: str | None = Field(
        default=None, description='The error\'s contract name, e.g. "PERMISSION_DENIED".'
    )
    message: Text | None = Field(default=None, description="The error message, clipped.")
    worker: str = Field(description="The app id of the worker that answered.")


class AuditNote(_Record):
    """An audit record in short, kept with the instance it is about (its newest few), for
    ``explain`` and the dashboard's timeline; the whole record is on the audit topic."""

    at: Timestamp
    principal: str | None
    role: str | None
    action: str
    outcome: AuditOutcome
    status: int
    error: str | None = None
    remediation_id: str | None = None

    @classmethod
    def of(cls, record: AuditRecord) -> AuditNote:
        return cls(
            at=record.occurred_at,
            principal=record.principal,
            role=record.role,
            action=record.action,
            outcome=record.outcome,
            status=record.status,
            error=record.error,
            remediation_id=record.remediation_id,
        )


class DeadLetter(_Record):
    """Input that could not be used, with the reason, on ``remediator-dead-letter``."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    payload: str
    payload_encoding: Literal["base64"] | None = None
    error: str = Field(description="One readable line.")
    received_at: Timestamp
    # Additions: a dead letter always fits on its topic, whatever came in.
    payload_size: int | None = Field(
        default=None, description="Size of the original payload in bytes."
    )
    payload_sha256: str | None = Field(
        default=None, description="SHA-256 of the original payload (hex)."
    )
    payload_truncated: bool = Field(
        default=False, description="Only a prefix of the payload is kept (see payload_size)."
    )


def dump_json(model: BaseModel) -> bytes:
    """The wire form of a model: compact UTF-8 JSON bytes."""
    return model.__pydantic_serializer__.to_json(model)


_M = TypeVar("_M", bound=BaseModel)


def assemble(model: type[_M], values: dict[str, Any], given: set[str]) -> _M:
    """A model from values the caller vouches for: ``values`` holds EVERY field (set or
    default) and ``given`` the ones set. What ``model_construct`` does, without its
    per-field default resolution: a quarter of its cost, for the few models built once per
    input record (profiled on the hot path). Anything else uses the normal constructors."""
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", given)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance
