"""The remediation policy: which signal calls for which remediation, and the safety rules.

One :class:`Policy` value holds all of it; it is read from a TOML file
(``REMEDIATOR_POLICY_FILE``, see :func:`load_policy`), and the default shipped with the
package (``default-policy.toml``) is the README's "Default policy" table. Its JSON Schema is
``schemas/policy.json``.

:func:`classify` turns one signal into a :class:`Verdict`:

- ``OPEN``: a failing signal that a rule maps to a remediation ``mode``;
- ``RECORD_ONLY``: a failing or warning signal worth recording but not acting on;
- ``HEALTHY``: a passing run, a resolved alert, or a skipped run (it may auto-resolve).

Rules are tried in file order and the first that matches wins (so put a refinement, such
as xid 79 of ``DmesgXidError``, before the general rule). A failing signal no rule names
gets ``fallback_mode`` (the lightest, REBOOT_VM, by default: a human approves it), or is
recorded only with ``fallback = "record"``. The verdict names its rule, so that every
remediation can say why it exists. EVICT_WITHOUT_REPLACEMENT is refused as a rule's mode:
it is never chosen automatically.

How the rest of the policy (debounce, cooldown, escalation, auto-resolve, auto-approval,
shadow mode) is applied is in :mod:`correlate`, approval expiry in :mod:`expiry`,
post-repair verification in :mod:`verification`; this module only describes it.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from . import topology
from .freeze import Calendar, Freeze
from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    HealthSignal,
    PassiveHealthCheckEvent,
    RemediationMode,
    Severity,
)
from .notify_policy import NotifyTargets
from .topology import DomainMap

M = RemediationMode

#: The escalation ladder, lightest first: a remediation that did not help escalates one rung.
LADDER: tuple[RemediationMode, ...] = (M.REBOOT_VM, M.VM_ONLY, M.HOST_AWARE)

#: How heavy each mode is. A host power cycle resets the hardware a VM reboot cannot
#: reach, yet keeps the VM and the host: heavier than a reboot, lighter than replacing
#: the VM. Eviction is never chosen automatically: heaviest of all.
_WEIGHT: Mapping[RemediationMode, int] = {
    M.REBOOT_VM: 0,
    M.HOST_POWER_CYCLE: 1,
    M.VM_ONLY: 2,
    M.HOST_AWARE: 3,
    M.EVICT_WITHOUT_REPLACEMENT: 4,
}

#: Where escalation goes when a remediation did not clear the problem (the ladder
#: above; a power cycle that did not help moves the VM to another host).
_NEXT: Mapping[RemediationMode, RemediationMode] = {
    M.REBOOT_VM: M.VM_ONLY,
    M.HOST_POWER_CYCLE: M.HOST_AWARE,
    M.VM_ONLY: M.HOST_AWARE,
    M.HOST_AWARE: M.HOST_AWARE,
}


#: The modes a policy may choose, lightest first (never EVICT_WITHOUT_REPLACEMENT).
_AUTOMATIC = sorted(
    (m for m in RemediationMode if m is not M.EVICT_WITHOUT_REPLACEMENT), key=_WEIGHT.__getitem__
)


def heavier(a: RemediationMode, b: RemediationMode) -> bool:
    """Whether ``a`` is a heavier remediation than ``b``."""
    return _WEIGHT[a] > _WEIGHT[b]


def next_mode(mode: RemediationMode) -> RemediationMode:
    """One step up the ladder (HOST_AWARE stays HOST_AWARE)."""
    return _NEXT.get(mode, M.HOST_AWARE)


def _mode_name(value: Any) -> Any:
    """Accept ``HOST_AWARE`` as well as ``REMEDIATION_MODE_HOST_AWARE``; refuse anything
    else naming only the modes a policy may choose (not EVICT_WITHOUT_REPLACEMENT)."""
    if isinstance(value, str) and not value.startswith("REMEDIATION_MODE_"):
        value = f"REMEDIATION_MODE_{value}"
    if isinstance(value, str) and value not in {m.value for m in RemediationMode}:
        choices = ", ".join(m.value.removeprefix("REMEDIATION_MODE_") for m in _AUTOMATIC)
        shown = value.removeprefix("REMEDIATION_MODE_")
        raise ValueError(f"{shown!r} is not a mode a policy may choose: {choices}")
    return value


AutoMode = Annotated[RemediationMode, BeforeValidator(_mode_name)]


def _any_mode_name(value: Any) -> Any:
    """``EVICT_WITHOUT_REPLACEMENT`` as well as ``REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT``."""
    if isinstance(value, str) and not value.startswith("REMEDIATION_MODE_"):
        return f"REMEDIATION_MODE_{value}"
    return value


#: Any mode, short or long name (what people approve, not what a policy may choose).
AnyMode = Annotated[RemediationMode, BeforeValidator(_any_mode_name)]
RuleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:*-]{1,100}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Strict):
    """Which failing signals this rule matches, and what it does about them."""

    name: RuleName
    alerts: list[str] = Field(
        default_factory=list, description="Alert names matched when CRITICAL and FIRING."
    )
    tests: list[str] = Field(default_factory=list, description="Active tests matched when FAILED.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Only alerts whose annotations have all of these values (e.g. xid = 79).",
    )
    action: Literal["open", "record"] = Field(
        default="open", description="open a remediation, or only record the signal"
    )
    mode: AutoMode | None = Field(default=None, description="Required when action is open.")
    debounce_count: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Failing signals of this rule needed within debounce_window_minutes "
        "before a remediation opens.",
    )
    debounce_window_minutes: float = Field(default=10.0, gt=0)
    shadow: bool = Field(
        default=False, description="Dry run: publish what would be done, open nothing."
    )
    approval_ttl_hours: float | None = Field(
        default=None,
        ge=0,
        description="This rule's recommendations expire after this long unapproved; unset: "
        "the policy's approval_ttl_hours.",
    )
    verify_within_minutes: float | None = Field(
        default=None,
        ge=0,
        description="After this rule's remediation succeeds, the instance must show health "
        "within this long; unset: the policy's verify_within_minutes.",
    )

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if not self.alerts and not self.tests:
            raise ValueError(f"rule {self.name!r} matches nothing: give alerts or tests")
        if self.action == "open":
            if self.mode is None:
                raise ValueError(f"rule {self.name!r} opens remediations: give its mode")
            if self.mode is M.EVICT_WITHOUT_REPLACEMENT:
                raise ValueError(
                    f"rule {self.name!r}: EVICT_WITHOUT_REPLACEMENT is never chosen automatically"
                )
        return self

    @property
    def debounce_window(self) -> timedelta:
        return timedelta(minutes=self.debounce_window_minutes)


class HoldForHuman(_Strict):
    max_remediations: int = Field(
        default=3,
        ge=1,
        description="Remediations carried out on one instance within window_hours after "
        "which no automated one opens: a human takes over.",
    )
    window_hours: float = Field(default=24.0, gt=0)


DomainKey = Annotated[str, Field(pattern=r"^[^=\s]{1,100}$")]


class FailureDomains(_Strict):
    """Per failure domain (a rack, a leaf switch) within a cluster: how many automated
    remediations may be open at once there. Off while keys is empty."""

    keys: list[DomainKey] = Field(
        default_factory=list,
        description="The annotation / label keys that name a failure domain, e.g. "
        '["rack", "ib_leaf"]: each is limited on its own. Empty: no per-domain limit.',
    )
    max_open: int = Field(
        default=2, ge=1, description="At most this many open automated remediations per domain."
    )
    max_percent: float = Field(
        default=100.0,
        gt=0,
        le=100,
        description="... and at most this % of the domain's known instances, whichever is smaller.",
    )
    min_allowed: int = Field(
        default=1, ge=0, description="Always allow this many per domain, whatever the %."
    )
    resume_fraction: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Once a domain trips, its instances' new automated remediations resume "
        "only when its open ones fall to this fraction of its limit.",
    )
    file: str | None = Field(
        default=None,
        description="A mapping file (TOML, or JSON when it ends in .json): instance id, or "
        '"cluster_id/instance_id" -> { rack = "r12", ... }, for instances whose signals do '
        "not carry the keys. Relative to the policy file's directory.",
    )

    @model_validator(mode="after")
    def _check(self) -> FailureDomains:
        if self.file is not None and not self.keys:
            raise ValueError("a domains file needs keys: which of its values name a domain")
        return self

    def limit(self, known_instances: int) -> int:
        by_percent = int(known_instances * self.max_percent / 100)
        return max(self.min_allowed, min(self.max_open, by_percent))

    def resume_at(self, known_instances: int) -> int:
        return int(self.limit(known_instances) * self.resume_fraction)


class BlastRadius(_Strict):
    """Per cluster: how many automated remediations may be open at once (storm limit)."""

    max_open: int = Field(
        default=10, ge=1, description="At most this many open automated remediations."
    )
    max_percent: float = Field(
        default=20.0,
        gt=0,
        le=100,
        description="... and at most this % of the cluster's known instances (those in "
        "progress count as unhealthy), whichever is smaller.",
    )
    min_allowed: int = Field(
        default=1,
        ge=0,
        description="Always allow this many, whatever the percentage (small clusters).",
    )
    resume_fraction: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Once tripped, new automated remediations resume only when the open "
        "ones fall to this fraction of the limit (hysteresis).",
    )
    domains: FailureDomains = Field(
        default_factory=FailureDomains,
        description="The same limit per failure domain (rack, leaf switch) within the "
        "cluster; off unless keys are given.",
    )

    def limit(self, known_instances: int) -> int:
        by_percent = int(known_instances * self.max_percent / 100)
        return max(self.min_allowed, min(self.max_open, by_percent))

    def resume_at(self, known_instances: int) -> int:
        return int(self.limit(known_instances) * self.resume_fraction)


class ClusterPolicy(_Strict):
    auto_approve: list[RuleName] = Field(
        default_factory=list,
        description="Rules whose remediations in this cluster are approved at once "
        '(reviewed_by "Auto-Approved"); "*" for all. Never EVICT_WITHOUT_REPLACEMENT.',
    )
    shadow: bool = Field(default=False, description="Dry run for this cluster.")
    two_person_modes: list[AnyMode] | None = Field(
        default=None,
        description="This cluster's two_person_modes, in place of the policy-wide list "
        "(an empty list: none here).",
    )


#: Modes that need two different people to approve them unless the policy says otherwise:
#: the two that take a host down or an instance away for good.
TWO_PERSON_DEFAULT = [M.HOST_POWER_CYCLE, M.EVICT_WITHOUT_REPLACEMENT]


class Policy(_Strict):
    """The whole policy; see ``default-policy.toml`` for a commented example."""

    shadow: bool = Field(
        default=False,
        description="Dry run for the whole service: publish what would be opened on the "
        "policy-events topic, open nothing.",
    )
    cooldown_minutes: float = Field(
        default=30.0,
        ge=0,
        description="After an instance's remediation ends, failing signals open nothing "
        "new for this long (event time).",
    )
    auto_resolve_within_minutes: float = Field(
        default=5.0,
        ge=0,
        description="An automated remediation still waiting (PENDING_APPROVAL or PENDING) "
        "auto-resolves when the signal that opened it clears within this long; 0: "
        "whenever it clears while waiting.",
    )
    escalation_window_hours: float = Field(
        default=24.0,
        ge=0,
        description="The same problem returning within this long after a remediation ended "
        "opens the next one a step heavier (REBOOT_VM -> VM_ONLY -> HOST_AWARE).",
    )
    approval_ttl_hours: float = Field(
        default=24.0,
        ge=0,
        description="A PENDING_APPROVAL remediation not approved within this long (event "
        "time) is cancelled as 'approval expired'; 0: never. A rule may set its own.",
    )
    verify_within_minutes: float = Field(
        default=30.0,
        ge=0,
        description="After a remediation SUCCEEDS, the instance must show health (a passing "
        "active run, or the alert that opened it resolved) within this long (event time), "
        "else a VERIFICATION_FAILED policy event and the next failing signal escalates at "
        "once; 0: no verification. A rule may set its own.",
    )
    fallback: Literal["open", "record"] = Field(
        default="open",
        description="A failing signal no rule names: open a fallback_mode remediation, or "
        "only record it.",
    )
    fallback_mode: AutoMode = Field(
        default=M.REBOOT_VM, description="Mode for a failing signal no rule names."
    )
    two_person_modes: list[AnyMode] = Field(
        default_factory=lambda: list(TWO_PERSON_DEFAULT),
        description="Approving a remediation of one of these modes (or approving with an "
        "override to one) needs two different principals: the first approval is recorded "
        "(an APPROVAL_RECORDED policy event), the second moves it to PENDING. Such a mode "
        "is never auto-approved. Per cluster overridable.",
    )
    two_person_manual: bool = Field(
        default=False,
        description="A manual create of a two_person_modes mode opens PENDING_APPROVAL, "
        "its requester's approval recorded, and needs a second person; false: PENDING at "
        "once (the provider's behaviour).",
    )
    hold_for_human: HoldForHuman = Field(default_factory=HoldForHuman)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    rate_budget_per_hour: int = Field(
        default=20,
        ge=0,
        description="Per cluster, at most this many automated remediations opened per "
        "hour (event time); 0: no budget.",
    )
    admission_queue_max: int = Field(
        default=100,
        ge=0,
        description="Per cluster, at most this many proposals refused for the blast radius "
        "or the rate budget wait (oldest first) and are opened as soon as there is room; "
        "0: refused proposals are dropped.",
    )
    replace_default_rules: bool = Field(
        default=False,
        description="In a policy file: its rules replace the default ones. Otherwise they "
        "come first, and the default rules it does not name follow (other settings always "
        "override the defaults key by key).",
    )
    rules: list[Rule] = Field(default_factory=list)
    clusters: dict[str, ClusterPolicy] = Field(default_factory=dict)
    freeze: list[Freeze] = Field(
        default_factory=list,
        description="Change freezes ([[freeze]] entries): windows in which no automated "
        "remediation opens (proposals wait in the admission queue, reason freeze) and "
        "approved ones do not start; an admin may still create one by hand, with a reason.",
    )
    notify: NotifyTargets = Field(
        default_factory=list,
        description="Webhooks told of transitions and policy events ([[notify]] entries; "
        "see remediator.notify).",
    )

    @model_validator(mode="after")
    def _check(self) -> Policy:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        # A name that matches nothing would silently approve nothing (issue 13).
        known = {*names, FALLBACK_RULE, "*"}
        for cluster_id, cluster in sorted(self.clusters.items()):
            unknown = [n for n in cluster.auto_approve if n not in known]
            if unknown:
                raise ValueError(
                    f"clusters.{cluster_id}.auto_approve names no rule: {', '.join(unknown)} "
                    f"(the rules: {', '.join(names) or 'none'}; also {FALLBACK_RULE!r}, '*')"
                )
        frozen = [f.name for f in self.freeze]
        if len(set(frozen)) != len(frozen):
            raise ValueError("freeze names must be unique")
        if self.fallback_mode is M.EVICT_WITHOUT_REPLACEMENT:
            raise ValueError("fallback_mode: EVICT_WITHOUT_REPLACEMENT is never automatic")
        if self.fallback_mode is M.HOST_POWER_CYCLE:
            raise ValueError(
                "fallback_mode: HOST_POWER_CYCLE fits known host faults only, never an "
                "unknown one; name it in a rule"
            )
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Policy:
        """A copy whose derived values (cached properties) are derived again: pydantic
        copies them as they were, which would keep the old rules or freezes."""
        copied = super().model_copy(update=update, deep=deep)
        for derived in _DERIVED:
            copied.__dict__.pop(derived, None)
        return copied

    @property
    def cooldown(self) -> timedelta:
        return timedelta(minutes=self.cooldown_minutes)

    @property
    def auto_resolve_within(self) -> timedelta | None:
        minutes = self.auto_resolve_within_minutes
        return timedelta(minutes=minutes) if minutes else None

    @property
    def escalation_window(self) -> timedelta:
        return timedelta(hours=self.escalation_window_hours)

    def approval_ttl(self, rule: str | None) -> timedelta | None:
        """How long a recommendation of ``rule`` may wait for approval; None: forever."""
        found = self.rule(rule) if rule is not None else None
        hours = self.approval_ttl_hours
        if found is not None and found.approval_ttl_hours is not None:
            hours = found.approval_ttl_hours
        return timedelta(hours=hours) if hours else None

    def verify_within(self, rule: str | None) -> timedelta | None:
        """How long after a success of ``rule`` health must show; None: not verified."""
        found = self.rule(rule) if rule is not None else None
        minutes = self.verify_within_minutes
        if found is not None and found.verify_within_minutes is not None:
            minutes = found.verify_within_minutes
        return timedelta(minutes=minutes) if minutes else None

    def rule(self, name: str) -> Rule | None:
        return self._rules_by_name.get(name)

    @functools.cached_property
    def freezes(self) -> Calendar:
        """The change freezes, asked at event times (see :mod:`freeze`)."""
        return Calendar(tuple(self.freeze))

    @functools.cached_property
    def _rules_by_name(self) -> dict[str, Rule]:
        # Looked up several times per failing signal; the first rule of a name wins.
        by_name: dict[str, Rule] = {}
        for rule in self.rules:
            by_name.setdefault(rule.name, rule)
        return by_name

    def auto_approves(self, cluster_id: str, rule: str, mode: RemediationMode) -> bool:
        """Whether the cluster approves ``rule``'s remediations at once: never one of a
        mode that needs two people."""
        cluster = self.clusters.get(cluster_id)
        return (
            cluster is not None
            and ("*" in cluster.auto_approve or rule in cluster.auto_approve)
            and not self.needs_two(cluster_id, mode)
        )

    def needs_two(self, cluster_id: str, mode: RemediationMode) -> bool:
        """Whether approving ``mode`` in the cluster takes two different principals."""
        cluster = self.clusters.get(cluster_id)
        if cluster is not None and cluster.two_person_modes is not None:
            return mode in cluster.two_person_modes
        return mode in self.two_person_modes

    def shadows(self, cluster_id: str, rule: str) -> bool:
        cluster = self.clusters.get(cluster_id)
        found = self.rule(rule)
        return (
            self.shadow
            or (cluster is not None and cluster.shadow)
            or (found is not None and found.shadow)
        )


#: Policy's cached properties, derived from its fields (see Policy.model_copy).
_DERIVED = ("_rules_by_name", "freezes")


class PolicyError(Exception):
    """The policy file cannot be used; the message is one line."""


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse TOML text into a :class:`Policy` as it stands (no defaults layered under it);
    raise :class:`PolicyError` (one line)."""
    return _validate(_toml(text, source), source)


def parse_layered(text: str, source: str = "policy") -> Policy:
    """A policy file over the shipped defaults (see :func:`layer`); :class:`PolicyError`."""
    defaults = _toml(default_policy_text(), "default-policy.toml")
    return _validate(layer(defaults, _toml(text, source)), source)


def layer(defaults: Mapping[str, Any], file: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings over the defaults, key by key (tables such as ``blast_radius``
    merged key by key too). Its rules come first, then the default rules it does not name
    (a rule of the same name replaces the default one), unless it says
    ``replace_default_rules = true``: then its rules are all there is.

    A file with only ``cooldown_minutes = 5`` keeps every default rule (before this, it
    had none, and every critical signal fell back to REBOOT_VM).
    """
    merged = _merge_tables(defaults, {k: v for k, v in file.items() if k != "rules"})
    rules = list(file.get("rules", []))
    if file.get("replace_default_rules") is not True:
        named = {r.get("name") for r in rules if isinstance(r, dict)}
        rules += [r for r in defaults.get("rules", []) if r.get("name") not in named]
    merged["rules"] = rules
    return merged


def _merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge_tables(below, value)
        else:
            merged[key] = value
    return merged


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None


def _validate(data: Mapping[str, Any], source: str) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:3]:
            where = ".".join(str(p) for p in error["loc"]) or "(top)"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise PolicyError(f"{source}: " + "; ".join(problems) + more) from None


def default_policy_text() -> str:
    return (resources.files("remediator") / "default-policy.toml").read_text(encoding="utf-8")


DEFAULT_SOURCE = "built-in default-policy.toml"


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """A loaded policy with where it came from and a hash of its text, so an operator can
    tell which policy a worker runs (the banner and ``GET /v1/compute/policy`` show both)."""

    policy: Policy
    source: str
    sha256: str
    #: The failure domains' mapping file, read (``blast_radius.domains.file``); empty
    #: without one.
    domains: DomainMap = field(default_factory=dict)


def load_policy_in_force(path: Path | None) -> PolicyInForce:
    """The policy in ``path``, or the default shipped with the package when None, with
    the failure domains' mapping file it names (relative to the policy file)."""
    if path is None:
        text, source = default_policy_text(), DEFAULT_SOURCE
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read it ({exc.strerror})") from None
        source = str(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    policy = parse_policy(text, source) if path is None else parse_layered(text, source)
    domains: DomainMap = topology.EMPTY
    file = policy.blast_radius.domains.file
    if file is not None:
        where = Path(file) if path is None else path.parent / file
        try:
            domains = topology.load_domain_map(where)
        except topology.DomainMapError as exc:
            raise PolicyError(f"{source}: blast_radius.domains.file: {exc}") from None
    return PolicyInForce(policy, source, digest, domains)


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path``, or the default shipped with the package when None."""
    return load_policy_in_force(path).policy


class Action(enum.StrEnum):
    OPEN = "OPEN"
    RECORD_ONLY = "RECORD_ONLY"
    HEALTHY = "HEALTHY"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    rule: str
    reason: str
    mode: RemediationMode | None = None


#: The rule name given to failing signals that no rule names.
FALLBACK_RULE = "fallback"


def classify(signal: HealthSignal, policy: Policy | None = None) -> Verdict:
    """The policy's verdict on one signal. Pure: depends on the signal and policy alone."""
    policy = policy or DEFAULT_POLICY
    if isinstance(signal, ActiveHealthCheckRun):
        return _classify_run(signal, policy)
    return _classify_event(signal, policy)


def _classify_run(run: ActiveHealthCheckRun, policy: Policy) -> Verdict:
    if run.result is ActiveTestResult.PASSED:
        return Verdict(Action.HEALTHY, f"test:{run.test}", f"{run.test} passed")
    if run.result is ActiveTestResult.SKIPPED:
        return Verdict(Action.HEALTHY, f"test:{run.test}", f"{run.test} skipped")
    detail = f": {run.message}" if run.message else ""
    what = f"active test {run.test} failed{detail}"
    for rule in policy.rules:
        if run.test in rule.tests:
            return _verdict(rule, what)
    return _fallback(policy, what)


def _classify_event(event: PassiveHealthCheckEvent, policy: Policy) -> Verdict:
    name = event.alert_name
    if event.status is AlertStatus.RESOLVED:
        return Verdict(Action.HEALTHY, f"alert:{name}", f"{name} resolved")
    if event.severity is not Severity.CRITICAL:
        return Verdict(
            Action.RECORD_ONLY,
            f"severity:{event.severity.value}",
            f"{name} firing at {event.severity.value}: recorded only",
        )
    annotations = event.annotations or {}
    for rule in policy.rules:
        if name in rule.alerts and all(
            annotations.get(k) == v for k, v in rule.annotations.items()
        ):
            refinement = "".join(f" {k}={v}" for k, v in rule.annotations.items())
            return _verdict(rule, f"{name}{refinement} firing (CRITICAL)")
    return _fallback(policy, f"{name} firing (CRITICAL), no specific rule")


def _verdict(rule: Rule, what: str) -> Verdict:
    if rule.action == "record":
        return Verdict(Action.RECORD_ONLY, rule.name, f"{what}: recorded only")
    return Verdict(Action.OPEN, rule.name, what, rule.mode)


def _fallback(policy: Policy, what: str) -> Verdict:
    if policy.fallback == "record":
        return Verdict(Action.RECORD_ONLY, FALLBACK_RULE, f"{what}: no rule, recorded only")
    return Verdict(Action.OPEN, FALLBACK_RULE, what, policy.fallback_mode)


DEFAULT_POLICY = parse_policy(default_policy_text(), "default-policy.toml")

#: Kept for readers of the old tables: the default rules as alert/test -> mode maps.
ALERT_MODES: Mapping[str, RemediationMode | None] = {
    alert: rule.mode
    for rule in reversed(DEFAULT_POLICY.rules)
    if not rule.annotations
    for alert in rule.alerts
}
TEST_MODES: Mapping[str, RemediationMode | None] = {
    test: rule.mode for rule in reversed(DEFAULT_POLICY.rules) for test in rule.tests
}
