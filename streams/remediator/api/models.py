"""Request and response bodies of the Remediations REST API (CONTRACT.md §4)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from remediator.domain.models import Remediation, RemediationMode
from remediator.domain.replies import SafetyView

#: Client-specified remediation ids: short, URL-safe, no slash.
RemediationId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:~-]+$")
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
    code: int
    status: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ReasonBody(_Body):
    """Pausing a cluster or opting an instance out needs a reason, for the next operator."""

    reason: str = Field(min_length=1, max_length=MAX_TEXT)


class ClusterSafetyResponse(SafetyView):
    """A cluster's safety state (an addition to the contract), counted on the cluster's
    own event-time clock (``as_of``), like the decisions it explains."""
