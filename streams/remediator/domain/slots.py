"""Execution slots of one cluster: at most N remediations RUNNING at once, the rest in order.

A cluster's instances live on many partitions, so the limit needs one place that sees them
all: the owner of the key ``cluster:{cluster_id}`` on the inbox. It keeps
:class:`ClusterSlots` (a queue and the granted set) and is driven by two requests that the
instances' writers derive from their own transitions (:func:`requests_for`):

- ``ENQUEUE`` when a remediation becomes PENDING (approved, or created manually);
- ``RELEASE`` when a PENDING or RUNNING one ends (finished, cancelled, auto-resolved), or
  when a grant arrives for one that is no longer PENDING;
- ``ADMIT``, sent by a worker that takes a cluster's key over (at start, after a
  rebalance) when remediations wait and slots look free: it only re-applies the limit,
  which may have been raised since.

:func:`handle` answers with the grants to send (first come, first served). A grant holds
its slot until released, so a remediation granted but not yet RUNNING counts against the
limit: the limit is never exceeded, only approached conservatively.

Everything is idempotent, because requests may be delivered again after a crash: an
``ENQUEUE`` of a remediation already queued, granted or released is ignored (released ids
are remembered, bounded), a ``RELEASE`` of an unknown one only records it. Replaying a
request recomputes the same grants, which the instance ignores when already applied.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from .models import Identifier, RemediationState, RemediationTransition, Timestamp

#: Released remediation ids remembered per cluster, to ignore a late repeated ENQUEUE.
MAX_RELEASED = 1000


class SlotEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation_id: str
    instance_id: Identifier


class ClusterSlots(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_id: Identifier
    granted: list[SlotEntry] = Field(default_factory=list, description="Holding a slot.")
    queue: list[SlotEntry] = Field(default_factory=list, description="Waiting, oldest first.")
    released: list[str] = Field(
        default_factory=list, description="Recently released, oldest first."
    )

    def knows(self, remediation_id: str) -> bool:
        return (
            any(e.remediation_id == remediation_id for e in self.granted)
            or any(e.remediation_id == remediation_id for e in self.queue)
            or remediation_id in self.released
        )


class SlotRequestKind(enum.StrEnum):
    ENQUEUE = "ENQUEUE"
    RELEASE = "RELEASE"
    ADMIT = "ADMIT"  # change nothing, grant what the (possibly new) limit allows


class SlotRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SlotRequestKind
    cluster_id: Identifier
    instance_id: Identifier
    remediation_id: str
    occurred_at: Timestamp


@dataclass(frozen=True, slots=True)
class SlotDecision:
    slots: ClusterSlots
    grants: tuple[SlotEntry, ...]


def handle(slots: ClusterSlots | None, request: SlotRequest, limit: int) -> SlotDecision:
    """Apply one request to the cluster's slots; return the grants it frees up."""
    if slots is None:
        slots = ClusterSlots(cluster_id=request.cluster_id)
    entry = SlotEntry(remediation_id=request.remediation_id, instance_id=request.instance_id)
    if request.kind is SlotRequestKind.ADMIT:
        pass
    elif request.kind is SlotRequestKind.ENQUEUE:
        if not slots.knows(entry.remediation_id):
            slots = slots.model_copy(update={"queue": [*slots.queue, entry]})
    else:
        rid = entry.remediation_id
        released = slots.released
        if rid not in released:
            released = [*released, rid][-MAX_RELEASED:]
        slots = slots.model_copy(
            update={
                "granted": [e for e in slots.granted if e.remediation_id != rid],
                "queue": [e for e in slots.queue if e.remediation_id != rid],
                "released": released,
            }
        )
    return admit(slots, limit)


def admit(slots: ClusterSlots, limit: int) -> SlotDecision:
    """Grant queued remediations, oldest first, while fewer than ``limit`` hold a slot.

    A limit of 0 grants nothing: execution is switched off and remediations wait PENDING.
    """
    free = limit - len(slots.granted)
    if free <= 0 or not slots.queue:
        return SlotDecision(slots, ())
    grants = tuple(slots.queue[:free])
    slots = slots.model_copy(
        update={"granted": [*slots.granted, *grants], "queue": slots.queue[free:]}
    )
    return SlotDecision(slots, grants)


_HOLDS_SLOT = (RemediationState.PENDING, RemediationState.RUNNING)


def requests_for(transitions: Iterable[RemediationTransition]) -> list[SlotRequest]:
    """The slot requests an instance's transitions call for (see the module docstring)."""
    requests: list[SlotRequest] = []
    for t in transitions:
        kind: SlotRequestKind | None = None
        if t.to_state is RemediationState.PENDING and t.from_state is not RemediationState.PENDING:
            kind = SlotRequestKind.ENQUEUE
        elif t.to_state.is_terminal and t.from_state in _HOLDS_SLOT:
            kind = SlotRequestKind.RELEASE
        if kind is not None:
            requests.append(
                SlotRequest(
                    kind=kind,
                    cluster_id=t.remediation.cluster_id,
                    instance_id=t.remediation.instance_id,
                    remediation_id=t.remediation_id,
                    occurred_at=t.occurred_at,
                )
            )
    return requests


def waiting_with_room(slots: ClusterSlots, limit: int) -> bool:
    """Remediations wait while the limit would grant some: an ``ADMIT`` is due."""
    return bool(slots.queue) and len(slots.granted) < limit


def give_back(cluster_id: str, instance_id: str, remediation_id: str, at: datetime) -> SlotRequest:
    """The RELEASE for a grant that could not be used."""
    return SlotRequest(
        kind=SlotRequestKind.RELEASE,
        cluster_id=cluster_id,
        instance_id=instance_id,
        remediation_id=remediation_id,
        occurred_at=at,
    )
