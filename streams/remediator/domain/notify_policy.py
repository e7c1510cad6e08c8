"""The policy's ``[[notify]]`` targets: who is told about which transitions and policy events.

Each target names a URL, the triggers it wants (transition states such as
``PENDING_APPROVAL`` or ``FAILED``, policy event kinds such as ``BLAST_RADIUS_TRIPPED``),
optionally a set of clusters, a body format (``cloudevents`` or ``slack``) and a secret
file whose contents sign each body (HMAC-SHA256 in a header). How they are delivered is
in :mod:`remediator.notify`; this module only describes and checks them, and reads the
secrets (relative to the policy file, like ``blast_radius.domains.file``).

A target's URL may itself be a credential (a Slack incoming webhook's path is), so the
JSON form of a target (``GET /v1/compute/policy``, ``policy check --output json``) shows
only its scheme, host and port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, field_validator

from .models import PolicyEventKind, RemediationState

#: Transition states a target may name (a remediation entering that state).
STATES = frozenset(state.value for state in RemediationState)
#: Policy event kinds a target may name.
KINDS = frozenset(kind.value for kind in PolicyEventKind)
TRIGGERS = STATES | KINDS
DEFAULT_HEADER = "X-Remediator-Signature"


class NotifyError(ValueError):
    """A notify target cannot be used (an unreadable secret file); one line."""


class NotifyTarget(BaseModel):
    """One receiver of notifications: a webhook that gets the transitions and policy
    events named in ``on``, delivered at least once (receivers drop repeats by id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9._:-]{1,100}$",
        description="Unique among the targets; labels the metrics and dead letters.",
    )
    url: str = Field(
        description="Where to POST (http or https). Shown without its path and query by "
        "the API and policy check (a Slack webhook's path is its secret)."
    )
    on: list[str] = Field(
        min_length=1,
        description="The triggers: remediation states (a transition INTO the state, e.g. "
        "PENDING_APPROVAL, FAILED) and policy event kinds (e.g. HELD_FOR_HUMAN, "
        "BLAST_RADIUS_TRIPPED, VERIFICATION_FAILED, FREEZE_STARTED); '*' for all.",
    )
    clusters: list[str] = Field(
        default_factory=list, description="Only these clusters' records; empty: all."
    )
    format: Literal["cloudevents", "slack"] = Field(
        default="cloudevents",
        description="cloudevents: structured-mode CloudEvents 1.0 JSON (id = the "
        "transition's or event's id); slack: an incoming-webhook message.",
    )
    secret_file: str | None = Field(
        default=None,
        description="A file holding the signing secret (read at start, never shown), "
        "relative to the policy file's directory. Set: every body is signed.",
    )
    header: str = Field(
        default=DEFAULT_HEADER,
        pattern=r"^[A-Za-z0-9-]{1,100}$",
        description="The signature's header: sha256=<hex HMAC-SHA256 of the body>.",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Attempts per notification before it goes to the dead-letter topic.",
    )
    backoff_initial_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Backoff before the second attempt."
    )
    backoff_max_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest backoff (it doubles per attempt, with jitter, up to this).",
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of one HTTP request."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            raise ValueError("expected an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("on")
    @classmethod
    def _check_on(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name != "*" and name not in TRIGGERS]
        if unknown:
            raise ValueError(
                f"unknown trigger(s) {', '.join(unknown)}: name remediation states "
                f"({', '.join(sorted(STATES))}) or policy event kinds "
                f"({', '.join(sorted(KINDS))})"
            )
        return value

    @field_serializer("url", when_used="json")
    def _shown_url(self, value: str) -> str:
        return shown_url(value)

    def wants(self, trigger: str, cluster_id: str | None) -> bool:
        """Whether this target is told of ``trigger`` (a state or a kind) in the cluster."""
        if "*" not in self.on and trigger not in self.on:
            return False
        return not self.clusters or "*" in self.clusters or cluster_id in self.clusters


def shown_url(url: str) -> str:
    """``https://hooks.example.com/…``: the URL without credentials, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def _unique_names(targets: list[NotifyTarget]) -> list[NotifyTarget]:
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"notify target names must be unique: {', '.join(duplicates)}")
    return targets


#: The policy's ``notify`` field: targets with unique names.
NotifyTargets = Annotated[list[NotifyTarget], AfterValidator(_unique_names)]


def read_secrets(targets: Iterable[NotifyTarget], policy_file: Path | None) -> Mapping[str, bytes]:
    """Target name -> its signing secret, for the targets with a ``secret_file``
    (relative to the policy file's directory). Raises :class:`NotifyError` (one line,
    never the secret) when a file cannot be read or is empty."""
    secrets: dict[str, bytes] = {}
    for target in targets:
        if target.secret_file is None:
            continue
        path = Path(target.secret_file)
        if policy_file is not None and not path.is_absolute():
            path = policy_file.parent / path
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise NotifyError(
                f"notify target {target.name!r}: cannot read its secret_file {path} "
                f"({exc.strerror})"
            ) from None
        if not secret:
            raise NotifyError(f"notify target {target.name!r}: its secret_file {path} is empty")
        secrets[target.name] = secret
    return secrets
