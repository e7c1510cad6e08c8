"""What a command answers: a record, a list of records, or one of the contract's errors."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

from remediator.domain.models import Remediation


class ErrorCode(enum.StrEnum):
    """The contract's error statuses (CONTRACT.md §4) a command can end in."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    remediation: Remediation | None = None
    remediations: list[Remediation] | None = None
    created: bool = False
    error_code: ErrorCode | None = None
    error_message: str | None = None

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
