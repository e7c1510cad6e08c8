"""Execution slots of one cluster: at most N remediations RUNNING at once, the rest in order.

A cluster's instances all live on one partition, so the owner of that partition sees every
remediation of the cluster and derives the slots from the instances' own records, with no
state of their own to drift:

- a remediation being carried out (QUARANTINING, QUARANTINED, RUNNING) holds a slot;
- a PENDING one waits, first come first served by the time it became PENDING (its review
  time when approved, its creation time when an operator created it), then by id;
- :func:`due` says how many of the waiting ones start now.

A limit of 0 starts none: execution is switched off and remediations wait PENDING. A
limit lowered at run time applies as RUNNING ones end; a raised one at the next change in
the cluster (or when a worker takes the cluster over).
"""

from __future__ import annotations

from datetime import datetime

from .models import EXECUTING_STATES, Remediation, RemediationState


def holds_slot(remediation: Remediation | None) -> bool:
    """Being carried out (QUARANTINING, QUARANTINED or RUNNING)."""
    return remediation is not None and remediation.state in EXECUTING_STATES


def waiting(remediation: Remediation | None) -> bool:
    return remediation is not None and remediation.state is RemediationState.PENDING


def queue_key(remediation: Remediation) -> tuple[datetime, str]:
    """Where a PENDING remediation stands in its cluster's queue (smaller starts first)."""
    return (remediation.review_time or remediation.create_time, remediation.id)


def due(running: int, queued: int, limit: int) -> int:
    """How many queued remediations start now, with ``running`` already holding a slot."""
    return max(0, min(queued, limit - running))
