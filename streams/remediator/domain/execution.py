"""Carrying a remediation out: its steps, and how the executor's reports change it.

The executor itself (HTTP calls, polling) lives in ``remediator.pipeline.executor``; this
module is the part that decides, pure like :func:`correlate.decide`:

- :func:`plan` turns a mode into its control-plane steps (:data:`STEPS`), each with a
  deterministic ``operation_id`` (the control plane's idempotency key).
- :func:`start` moves a PENDING remediation to RUNNING (QUARANTINING for the modes that
  cordon the host first) with its plan recorded in the
  record, when the cluster has a free slot (:mod:`slots` says which wait and which run).
- :func:`apply_report` applies one report of the executor: a step STARTED (recorded
  *before* the executor calls the control plane), DONE or FAILED. The last step DONE makes
  the remediation SUCCEEDED; a step FAILED makes it FAILED with the step's error. Reports
  are idempotent: a repeat, or one about a remediation no longer running, changes nothing.

Every change is a published transition: ``STEP_STARTED`` and ``STEP_DONE`` are
``RUNNING -> RUNNING`` changes of the record, like ``ATTACH_SIGNAL``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from . import ids
from .bounds import Text
from .lifecycle import Event, IllegalTransition
from .models import (
    EXECUTING_STATES,
    Operation,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTransition,
    StepAction,
    StepState,
    StoredIdentifier,
    Timestamp,
)
from .state import InstanceState, record_change

#: Who the executor's changes are recorded as (the transitions' ``actor``).
EXECUTOR_PRINCIPAL = "system:executor"

#: A mode's control-plane steps, in order (the actions the control plane's API takes).
STEPS: Mapping[RemediationMode, tuple[StepAction, ...]] = {
    RemediationMode.REBOOT_VM: (StepAction.REBOOT_VM,),
    RemediationMode.VM_ONLY: (StepAction.DELETE_VM, StepAction.PROVISION_VM),
    RemediationMode.HOST_AWARE: (
        StepAction.CORDON_HOST,
        StepAction.DELETE_VM,
        StepAction.PROVISION_VM,
    ),
    RemediationMode.EVICT_WITHOUT_REPLACEMENT: (StepAction.DELETE_VM,),
    RemediationMode.HOST_POWER_CYCLE: (
        StepAction.CORDON_HOST,
        StepAction.POWER_CYCLE_HOST,
        StepAction.UNCORDON_HOST,
    ),
}

#: The modes whose first step cordons the host: they start QUARANTINING (CONTRACT §3).
CORDONING = frozenset({RemediationMode.HOST_AWARE, RemediationMode.HOST_POWER_CYCLE})


def plan(remediation: Remediation) -> list[Operation]:
    """The steps of ``remediation``'s mode, PLANNED, with their operation ids."""
    host_aware = remediation.mode is RemediationMode.HOST_AWARE
    return [
        Operation(
            operation_id=ids.operation_id(
                remediation.cluster_id,
                remediation.instance_id,
                remediation.id,
                number,
                action.value,
            ),
            action=action,
            # HOST_AWARE provisions the replacement on a different host.
            avoid_current_host=host_aware and action is StepAction.PROVISION_VM,
        )
        for number, action in enumerate(STEPS[remediation.mode], start=1)
    ]


class ReportKind(enum.StrEnum):
    STARTED = "STARTED"
    DONE = "DONE"
    FAILED = "FAILED"


class StepReport(BaseModel):
    """What the executor tells the instance's writer about one step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    remediation_id: str
    cluster_id: StoredIdentifier
    instance_id: StoredIdentifier
    step: int = Field(ge=0, description="Index in the remediation's operations.")
    operation_id: str
    kind: ReportKind
    error: Text | None = None  # the control plane's words: clipped (domain/bounds.py)
    observed_at: Timestamp


def start(state: InstanceState, now: datetime) -> tuple[InstanceState, RemediationTransition]:
    """Start the instance's PENDING remediation: RUNNING, or QUARANTINING for a mode that
    cordons the host first, with its steps planned.

    Raises :class:`~remediator.domain.lifecycle.IllegalTransition` (changing nothing)
    when there is no PENDING remediation to start.
    """
    current = state.open
    if current is None or current.remediation.state is not RemediationState.PENDING:
        raise IllegalTransition(
            current.remediation.state if current is not None else None,
            Event.START,
            "no PENDING remediation to start",
        )
    remediation = current.remediation
    operations = plan(remediation)
    steps = ", ".join(op.action.value for op in operations)
    event = Event.QUARANTINE if remediation.mode in CORDONING else Event.START
    return record_change(
        state,
        remediation,
        event,
        now=now,
        actor=EXECUTOR_PRINCIPAL,
        reason=f"started: {steps}",
        changes={"operations": operations},
    )


@dataclass(frozen=True, slots=True)
class Applied:
    state: InstanceState
    transitions: tuple[RemediationTransition, ...]
    #: Why nothing changed, for the log ("" when something did).
    ignored: str = ""


def apply_report(state: InstanceState | None, report: StepReport, now: datetime) -> Applied:
    """Apply one executor report; see the module docstring."""
    if state is None:
        return Applied(InstanceState.empty(report.cluster_id, report.instance_id), (), "no state")
    ignored = _stale(state, report)
    if ignored:
        return Applied(state, (), ignored)
    assert state.open is not None  # noqa: S101 - _stale checked it
    remediation = state.open.remediation
    operations = list(remediation.operations)
    operation = operations[report.step]
    label = f"step {report.step + 1}/{len(operations)} {operation.action.value}"
    where = f"(operation {operation.operation_id})"
    if report.kind is ReportKind.STARTED:
        if operation.state is not StepState.PLANNED:
            return Applied(state, (), f"{label} already {operation.state.value}")
    elif operation.state in (StepState.DONE, StepState.FAILED):
        return Applied(state, (), f"{label} already {operation.state.value}")
    operations[report.step], event, what, extra = _step_change(remediation, operations, report, now)
    reason = f"{label} {what} {where}" + (f": {extra['error']}" if "error" in extra else "")
    extra.pop("error", None)
    new_state, transition = record_change(
        state,
        remediation,
        event,
        now=now,
        actor=EXECUTOR_PRINCIPAL,
        reason=reason,
        changes={"operations": operations, **extra},
    )
    return Applied(new_state, (transition,))


def _stale(state: InstanceState, report: StepReport) -> str:
    """Why a report no longer applies ("" when it does): a replay, or a report about a
    remediation or step that has moved on."""
    current = state.open
    if current is None or current.remediation.id != report.remediation_id:
        return f"remediation {report.remediation_id} is not open"
    remediation = current.remediation
    if remediation.state not in EXECUTING_STATES:
        return f"remediation is {remediation.state.value}, not carried out"
    operations = remediation.operations
    if report.step >= len(operations):
        return f"no step {report.step}"
    if operations[report.step].operation_id != report.operation_id:
        return f"step {report.step} is {operations[report.step].operation_id}"
    if any(op.state is not StepState.DONE for op in operations[: report.step]):
        return f"an earlier step than {report.step} is not done"
    return ""


def _step_change(
    remediation: Remediation, operations: list[Operation], report: StepReport, now: datetime
) -> tuple[Operation, Event, str, dict[str, object]]:
    """The step as the report leaves it, the lifecycle event, what happened in words,
    and further changes to the record (a failure's ``error`` is for the reason only)."""
    operation = operations[report.step]
    if report.kind is ReportKind.STARTED:
        started = operation.model_copy(update={"state": StepState.RUNNING, "start_time": now})
        return started, Event.STEP_STARTED, "started", {}
    ended = {"start_time": operation.start_time or now, "end_time": now}
    if report.kind is ReportKind.DONE:
        done = operation.model_copy(update={"state": StepState.DONE, **ended})
        rest = [done if i == report.step else op for i, op in enumerate(operations)]
        if all(op.state is StepState.DONE for op in rest):
            return done, Event.SUCCEED, "done, all steps done", {}
        if remediation.state is RemediationState.QUARANTINING:
            return done, Event.QUARANTINED, "done, host cordoned", {}
        return done, Event.STEP_DONE, "done", {}
    error = report.error or "the control plane reported the step FAILED"
    failed = operation.model_copy(update={"state": StepState.FAILED, "error": error, **ended})
    message = f"{operation.action.value} failed: {error}"
    return failed, Event.FAIL, "failed", {"error_message": message, "error": error}


def running_remediation(state: InstanceState | None) -> Remediation | None:
    """The instance's remediation being carried out (QUARANTINING, QUARANTINED or RUNNING),
    if any: what an executor must be carrying out."""
    if state is None or state.open is None:
        return None
    remediation = state.open.remediation
    return remediation if remediation.state in EXECUTING_STATES else None
