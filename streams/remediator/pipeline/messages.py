"""Messages on the internal per-instance topic (``{app_id}-instance-inbox``).

Everything that changes an instance's remediations travels on that one topic, keyed
``"{cluster_id}/{instance_id}"``, so that one agent applies it in order (invariant 4):
health signals re-keyed by the ingest agent, and API commands sent by the web views.

The executor's traffic travels the same way: slot grants (:mod:`remediator.domain.slots`)
and step reports (:mod:`remediator.domain.execution`) keyed by instance, so its changes are
applied by the same single writer, in order with signals and commands.

More routes use the same topic and agent, with other keys:
- ``claim``: a CREATE with a client-specified id goes first to the key
  ``claim:{remediation_id}``, whose owner reserves the id for one target across all
  instances, then forwards the command to the instance;
- ``scan``: a cluster-wide LIST, or CLUSTERS (every cluster known), is sent to every
  partition explicitly; each owner answers from the instances it holds in that partition;
- ``cluster``: slot requests for a cluster go to the key ``cluster:{cluster_id}``, whose
  owner keeps the cluster's RUNNING limit and queue;
- ``safety``: admission requests and the pause commands of a cluster go to the key
  ``safety:{cluster_id}``, whose owner keeps its blast-radius count, budget and pause.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, model_validator

from remediator.domain import ids
from remediator.domain.commands import Command
from remediator.domain.execution import Grant, StepReport
from remediator.domain.models import ActiveHealthCheckRun, HealthSignal, PassiveHealthCheckEvent
from remediator.domain.safety import AdmissionRequest, AdmissionVerdict
from remediator.domain.slots import SlotRequest


class Route(enum.StrEnum):
    INSTANCE = "instance"
    CLAIM = "claim"
    SCAN = "scan"
    CLUSTER = "cluster"
    SAFETY = "safety"


class InboxMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    active_run: ActiveHealthCheckRun | None = None
    passive_event: PassiveHealthCheckEvent | None = None
    command: Command | None = None
    grant: Grant | None = None
    report: StepReport | None = None
    slot: SlotRequest | None = None
    admission: AdmissionRequest | None = None
    verdict: AdmissionVerdict | None = None
    route: Route = Route.INSTANCE

    @model_validator(mode="after")
    def _exactly_one(self) -> InboxMessage:
        items = (
            self.active_run,
            self.passive_event,
            self.command,
            self.grant,
            self.report,
            self.slot,
            self.admission,
            self.verdict,
        )
        present = [x for x in items if x is not None]
        if len(present) != 1:
            raise ValueError("an inbox message carries exactly one item")
        return self

    @classmethod
    def of_signal(cls, signal: HealthSignal) -> InboxMessage:
        if isinstance(signal, ActiveHealthCheckRun):
            return cls(active_run=signal)
        return cls(passive_event=signal)

    @property
    def signal(self) -> HealthSignal | None:
        return self.active_run or self.passive_event


def claim_key(remediation_id: str) -> str:
    return f"claim:{remediation_id}"


def scan_key(cluster_id: str) -> str:
    return f"scan:{cluster_id}"


def command_key(command: Command, route: Route) -> str:
    if route is Route.CLAIM:
        return claim_key(command.remediation_id or command.command_id)
    if route is Route.SCAN:
        return scan_key(command.cluster_id)
    if route is Route.SAFETY:
        return ids.safety_key(command.cluster_id)
    return ids.instance_key(command.cluster_id, command.instance_id)
