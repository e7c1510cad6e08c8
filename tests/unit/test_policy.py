"""Policy defaults from DESIGN.md: which signal calls for which mode."""

from __future__ import annotations

import pytest

from remediator.domain.models import RemediationMode
from remediator.domain.policy import ALERT_MODES, Action, classify
from tests.builders import event, run

M = RemediationMode


@pytest.mark.parametrize(
    ("alert", "mode"),
    [
        ("DmesgGpuFallenOffBus", M.HOST_AWARE),
        ("IBLinkFlapping", M.HOST_AWARE),
        ("NpdXfsShutdown", M.VM_ONLY),
        ("DmesgXidError", M.REBOOT_VM),
        ("KubeNodePIDPressure", M.REBOOT_VM),
    ],
)
def test_critical_alert_maps_to_its_mode(alert: str, mode: RemediationMode) -> None:
    verdict = classify(event(alert_name=alert))
    assert (verdict.action, verdict.mode) == (Action.OPEN, mode)


def test_xid_79_is_a_host_fault() -> None:
    verdict = classify(event(alert_name="DmesgXidError", annotations={"xid": "79"}))
    assert verdict.mode is M.HOST_AWARE
    assert "xid=79" in verdict.rule


def test_other_xid_reboots() -> None:
    assert (
        classify(event(alert_name="DmesgXidError", annotations={"xid": "13"})).mode is M.REBOOT_VM
    )


def test_unknown_critical_alert_falls_back_to_the_lightest_mode() -> None:
    verdict = classify(event(alert_name="SomethingNew"))
    assert (verdict.action, verdict.mode, verdict.rule) == (Action.OPEN, M.REBOOT_VM, "passive:*")


def test_failed_storage_test_reprovisions_and_gpu_test_migrates() -> None:
    assert classify(run(test="STORAGE_FIO")).mode is M.VM_ONLY
    assert classify(run(test="GPU_BURN")).mode is M.HOST_AWARE


def test_eviction_is_never_chosen_automatically() -> None:
    assert M.EVICT_WITHOUT_REPLACEMENT not in set(ALERT_MODES.values())
    for name in [*ALERT_MODES, "Unknown"]:
        assert classify(event(alert_name=name)).mode is not M.EVICT_WITHOUT_REPLACEMENT
