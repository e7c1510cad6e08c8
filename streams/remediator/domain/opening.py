"""Opening an automated remediation, one step shared by the two ways one is admitted.

Shared by a signal that is admitted at once (``correlate``) and a proposal admitted later
from the cluster's queue (``queueing``).
"""

from __future__ import annotations

from datetime import datetime

from .lifecycle import Event
from .models import Remediation, RemediationTransition
from .policy import Policy
from .state import InstanceState, record_change, record_creation

#: Who the pipeline's own changes are recorded as (``requested_by``, ``actor``).
SYSTEM_PRINCIPAL = "system:remediator"
#: ``reviewed_by`` of a remediation the policy approved (no human reviewed it).
AUTO_APPROVED = "Auto-Approved"


def open_automated(
    state: InstanceState, remediation: Remediation, policy: Policy, now: datetime
) -> tuple[InstanceState, tuple[RemediationTransition, ...]]:
    """Open an automated remediation, approved at once if its cluster says so."""
    if policy.needs_two(remediation.cluster_id, remediation.mode):
        remediation = remediation.model_copy(update={"approvals_required": 2})
    state, created = record_creation(
        state,
        remediation,
        Event.CREATE_AUTOMATED,
        now=now,
        actor=SYSTEM_PRINCIPAL,
        reason=f"{remediation.reason} [rule {remediation.rule}]",
    )
    transitions = [created]
    rule = remediation.rule or ""
    if policy.auto_approves(remediation.cluster_id, rule, remediation.mode):
        comment = f"policy: rule {rule} is auto-approved in cluster {remediation.cluster_id}"
        state, approved = record_change(
            state,
            remediation,
            Event.APPROVE,
            now=now,
            actor=AUTO_APPROVED,
            reason=comment,
            changes={"reviewed_by": AUTO_APPROVED, "review_time": now, "review_comment": comment},
        )
        transitions.append(approved)
    return state, tuple(transitions)
