"""Which health signal calls for which remediation: the defaults from DESIGN.md.

:func:`classify` turns one signal into a :class:`Verdict`:
- ``OPEN``: a failing signal that warrants a remediation of ``mode``;
- ``RECORD_ONLY``: a failing or warning signal worth recording but not acting on;
- ``HEALTHY``: a passing run, a resolved alert, or a skipped run.

The rule that decided is named in ``Verdict.rule`` so that every remediation can say why
it exists. EVICT_WITHOUT_REPLACEMENT is never chosen here. The configurable policy file
(issue 5) replaces these tables; the shape of :class:`Verdict` stays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .models import (
    ActiveHealthCheckRun,
    ActiveTestResult,
    AlertStatus,
    HealthSignal,
    PassiveHealthCheckEvent,
    RemediationMode,
    Severity,
)

M = RemediationMode


class Action(enum.StrEnum):
    OPEN = "OPEN"
    RECORD_ONLY = "RECORD_ONLY"
    HEALTHY = "HEALTHY"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    rule: str
    reason: str
    mode: RemediationMode | None = None


#: CRITICAL passive alerts and the mode they call for (DESIGN.md, policy defaults).
ALERT_MODES: Mapping[str, RemediationMode | None] = {
    # A fault of the host: migrate the VM to another host.
    "DmesgGpuFallenOffBus": M.HOST_AWARE,
    "GpuSmClockThermalThrottle": M.HOST_AWARE,
    "GpuPcieReplayRateHigh": M.HOST_AWARE,
    "IBRailsDownOrDegraded": M.HOST_AWARE,
    "IBLinkFlapping": M.HOST_AWARE,
    # A broken guest: a fresh VM on any host is the quick fix.
    "NpdCperHardwareErrorFatal": M.VM_ONLY,
    "NpdReadonlyFilesystem": M.VM_ONLY,
    "NpdXfsShutdown": M.VM_ONLY,
    # Usually cleared by a reboot.
    "DmesgXidError": M.REBOOT_VM,
    "GpuEccDoubleBitError": M.REBOOT_VM,
    "GpuRowRemapFailure": M.REBOOT_VM,
    "NpdKernelDeadlock": M.REBOOT_VM,
    "NpdFrequentKubeletRestart": M.REBOOT_VM,
    "NpdFrequentContainerdRestart": M.REBOOT_VM,
    "NpdFrequentUnregisterNetDevice": M.REBOOT_VM,
    "KubeNodeMemoryPressure": M.REBOOT_VM,
    "KubeNodePIDPressure": M.REBOOT_VM,
    # Recorded, never acted on.
    "KubeNodeDiskPressure": None,
    "SlurmNodeUnavailable": None,
}

#: XID codes that mean the GPU (so the host) is bad, whatever the alert's default.
HOST_FAULT_XIDS: frozenset[str] = frozenset({"79"})

#: Failed active tests and the mode they call for. GPU, NVLink and InfiniBand tests
#: exercise the host's hardware; a storage test failure is usually the guest's.
TEST_MODES: Mapping[str, RemediationMode] = {
    "DCGM_DIAG": M.HOST_AWARE,
    "GPU_BURN": M.HOST_AWARE,
    "NCCL_SINGLE_NODE": M.HOST_AWARE,
    "NVBANDWIDTH": M.HOST_AWARE,
    "IB_WRITE_BW": M.HOST_AWARE,
    "STORAGE_FIO": M.VM_ONLY,
}

#: The lightest action, for a failing signal no table names (a human approves it anyway).
FALLBACK_MODE = M.REBOOT_VM


def classify(signal: HealthSignal) -> Verdict:
    """The policy's verdict on one signal. Pure: depends on the signal alone."""
    if isinstance(signal, ActiveHealthCheckRun):
        return _classify_run(signal)
    return _classify_event(signal)


def _classify_run(run: ActiveHealthCheckRun) -> Verdict:
    if run.result is ActiveTestResult.PASSED:
        return Verdict(Action.HEALTHY, f"active:{run.test}", f"{run.test} passed")
    if run.result is ActiveTestResult.SKIPPED:
        return Verdict(Action.HEALTHY, f"active:{run.test}", f"{run.test} skipped")
    mode = TEST_MODES.get(run.test)
    rule = f"active:{run.test}" if mode is not None else "active:*"
    mode = mode or FALLBACK_MODE
    detail = f": {run.message}" if run.message else ""
    return Verdict(Action.OPEN, rule, f"active test {run.test} failed{detail}", mode)


def _classify_event(event: PassiveHealthCheckEvent) -> Verdict:
    name = event.alert_name
    if event.status is AlertStatus.RESOLVED:
        return Verdict(Action.HEALTHY, f"passive:{name}", f"{name} resolved")
    if event.severity is not Severity.CRITICAL:
        return Verdict(
            Action.RECORD_ONLY,
            f"passive:severity:{event.severity.value}",
            f"{name} firing at {event.severity.value}: recorded only",
        )
    xid = (event.annotations or {}).get("xid")
    if name == "DmesgXidError" and xid in HOST_FAULT_XIDS:
        return Verdict(
            Action.OPEN,
            f"passive:{name}:xid={xid}",
            f"{name} xid {xid} (GPU fell off the bus): host fault",
            M.HOST_AWARE,
        )
    if name in ALERT_MODES:
        mode = ALERT_MODES[name]
        if mode is None:
            return Verdict(Action.RECORD_ONLY, f"passive:{name}", f"{name} firing: recorded only")
        return Verdict(Action.OPEN, f"passive:{name}", f"{name} firing (CRITICAL)", mode)
    return Verdict(
        Action.OPEN, "passive:*", f"{name} firing (CRITICAL), no specific rule", FALLBACK_MODE
    )
