"""Request and response bodies of the Remediations REST API (README "The REST API")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from remediator.domain.models import Remediation, RemediationMode, segment_pattern
from remediator.domain.replies import ClusterSummary, SafetyView

#: Client-specified remediation ids: short, URL-safe, no slash, not "." or "..".
REMEDIATION_ID_PATTERN = segment_pattern(r"[A-Za-z0-9._:~-]", r"[A-Za-z0-9_:~-]")
RemediationId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=REMEDIATION_ID_PATTERN)
]

MAX_TEXT = 4096


class _Body(BaseModel):
    # Unknown fields are refused: a misspelt "mdoe" must not silently mean the default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateRemediationBody(_Body):
    mode: RemediationMode | None = Field(
        default=None, description="How to remediate; REMEDIATION_MODE_VM_ONLY when omitted."
    )
    reason: str | None = Field(default=None, max_length=MAX_TEXT, description="Why.")


class ApproveBody(_Body):
    comment: str | None = Field(default=None, max_length=MAX_TEXT)
    mode: RemediationMode | None = Field(default=None, description="Overrides the mode.")


class RejectBody(_Body):
    comment: str | None = Field(default=None, max_length=MAX_TEXT)


class CancelBody(_Body):
    pass


class ListRemediationsResponse(BaseModel):
    remediations: list[Remediation]
    has_next: bool
    next_page_token: str = Field(
        description="Pass as page_token for the next page; empty at the end."
    )


class ErrorDetail(BaseModel):
    code: int = Field(description="The HTTP status.")
    status: str = Field(description="INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ….")
    message: str
    type: str = Field(
        description="An addition: the class of error as the provider's SDK names it "
        "(invalid_request_error, authentication_error, service_unavailable_error, "
        "server_error)."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail
    # Additions: the same error as a google.rpc.Status, the form the SDK's CLI can read
    # (it needs error.code to be a string otherwise, and the contract fixes it as a number).
    code: int = Field(description="An addition: the gRPC code of error.status (google.rpc).")
    message: str = Field(description="An addition: error.message again.")


class WhoamiAPIKey(BaseModel):
    id: str = Field(description="The principal the bearer token belongs to.")


class WhoamiOrganization(BaseModel):
    id: str
    name: str


class WhoamiProject(BaseModel):
    id: str
    name: str
    slug: str


class WhoamiResponse(BaseModel):
    """``GET /v3/whoami``: the caller, in the SDK's ``WhoamiProjectAPIKey`` shape.

    A token of this service acts in one project, the service itself (its app id); the
    SDK's CLI asks this first and takes ``project.id`` as its project.
    """

    type: Literal["project_api_key"] = "project_api_key"
    api_key: WhoamiAPIKey
    organization: WhoamiOrganization
    project: WhoamiProject
    principal: str = Field(
        description="An addition: who requested_by and reviewed_by will say acted."
    )
    role: str = Field(
        default="unrestricted",
        description="An addition: the token's role (viewer, operator, admin, webhook; "
        "unrestricted: an entry without a role, every right), so that a client shows only "
        "what the caller may do.",
    )


class ListClustersResponse(BaseModel):
    """``GET /v1/compute/clusters`` (an addition): every cluster the service knows, that
    is, every cluster with an instance that a health signal or an API call has named,
    with what an operator scanning the fleet wants first. The provider's SDK reads only
    ``clusters[].cluster_id``."""

    clusters: list[ClusterSummary]


class PolicyResponse(BaseModel):
    """``GET /v1/compute/policy`` (an addition): the policy in force and where it came from."""

    source: str = Field(description="The policy file, or the built-in default's name.")
    sha256: str = Field(description="SHA-256 of the file's bytes, as the start-up banner shows.")
    policy: dict[str, Any] = Field(description="The effective policy, as JSON.")


class ReasonBody(_Body):
    """Pausing a cluster or opting an instance out needs a reason, for the next operator."""

    reason: str = Field(min_length=1, max_length=MAX_TEXT)


class ClusterSafetyResponse(SafetyView):
    """A cluster's safety state (an addition to the contract), counted on the cluster's
    own event-time clock (``as_of``), like the decisions it explains."""
