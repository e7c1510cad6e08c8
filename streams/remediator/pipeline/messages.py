"""Messages on the internal per-instance topic (``{app_id}-instance-inbox``).

Everything that changes an instance's remediations travels on that one topic, keyed
``"{cluster_id}/{instance_id}"``, so that one agent applies it in order (invariant 4).
Today: health signals re-keyed by the ingest agent. API commands and executor reports
join as further optional fields.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from remediator.domain.models import ActiveHealthCheckRun, HealthSignal, PassiveHealthCheckEvent


class InboxMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    active_run: ActiveHealthCheckRun | None = None
    passive_event: PassiveHealthCheckEvent | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InboxMessage:
        if (self.active_run is None) == (self.passive_event is None):
            raise ValueError("an inbox message carries exactly one item")
        return self

    @classmethod
    def of_signal(cls, signal: HealthSignal) -> InboxMessage:
        if isinstance(signal, ActiveHealthCheckRun):
            return cls(active_run=signal)
        return cls(passive_event=signal)

    @property
    def signal(self) -> HealthSignal:
        item = self.active_run or self.passive_event
        if item is None:  # pragma: no cover - ruled out by _exactly_one
            raise ValueError("empty inbox message")
        return item
