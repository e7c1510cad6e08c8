"""The default policy: which signal calls for which mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.domain.models import RemediationMode
from remediator.domain.policy import (
    ALERT_MODES,
    DEFAULT_POLICY,
    Action,
    PolicyError,
    classify,
    heavier,
    load_policy,
    next_mode,
    parse_policy,
)
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
    assert verdict.rule == "xid-79-gpu-fell-off-bus"
    assert "xid=79" in verdict.reason


def test_other_xid_reboots() -> None:
    assert (
        classify(event(alert_name="DmesgXidError", annotations={"xid": "13"})).mode is M.REBOOT_VM
    )


def test_unknown_critical_alert_falls_back_to_the_lightest_mode() -> None:
    verdict = classify(event(alert_name="SomethingNew"))
    assert (verdict.action, verdict.mode, verdict.rule) == (Action.OPEN, M.REBOOT_VM, "fallback")


def test_failed_storage_test_reprovisions_and_gpu_test_migrates() -> None:
    assert classify(run(test="STORAGE_FIO")).mode is M.VM_ONLY
    assert classify(run(test="GPU_BURN")).mode is M.HOST_AWARE


def test_eviction_is_never_chosen_automatically() -> None:
    assert M.EVICT_WITHOUT_REPLACEMENT not in set(ALERT_MODES.values())
    for name in [*ALERT_MODES, "Unknown"]:
        assert classify(event(alert_name=name)).mode is not M.EVICT_WITHOUT_REPLACEMENT


# -- the policy file ----------------------------------------------------------------------


def test_the_default_policy_file_is_designs_table() -> None:
    default = load_policy(None)
    assert default == DEFAULT_POLICY
    assert (default.cooldown_minutes, default.auto_resolve_within_minutes) == (30, 5)
    assert not default.shadow
    assert classify(event(alert_name="KubeNodeDiskPressure")).action is Action.RECORD_ONLY
    assert classify(event(alert_name="NpdXfsShutdown")).rule == "guest-faults"


POLICY = """
cooldown_minutes = 10
fallback_mode = "VM_ONLY"

[[rules]]
name = "special-xid"
alerts = ["DmesgXidError"]
annotations = { xid = "48", gpu = "0" }
mode = "REMEDIATION_MODE_HOST_AWARE"

[[rules]]
name = "xid"
alerts = ["DmesgXidError"]
mode = "REBOOT_VM"
debounce_count = 3

[[rules]]
name = "quiet"
tests = ["NCCL_SINGLE_NODE"]
action = "record"

[clusters.c1]
auto_approve = ["xid"]
"""


def test_rules_match_in_order_with_annotation_refinements() -> None:
    policy = parse_policy(POLICY)
    special = classify(
        event(alert_name="DmesgXidError", annotations={"xid": "48", "gpu": "0"}), policy
    )
    assert (special.rule, special.mode) == ("special-xid", M.HOST_AWARE)
    partial = classify(event(alert_name="DmesgXidError", annotations={"xid": "48"}), policy)
    assert (partial.rule, partial.mode) == ("xid", M.REBOOT_VM)
    assert classify(run(test="NCCL_SINGLE_NODE"), policy).action is Action.RECORD_ONLY
    fallback = classify(event(alert_name="Other"), policy)
    assert (fallback.rule, fallback.mode) == ("fallback", M.VM_ONLY)
    assert policy.rule("xid") is not None
    assert policy.auto_approves("c1", "xid", M.REBOOT_VM)
    assert not policy.auto_approves("c1", "special-xid", M.HOST_AWARE)
    assert not policy.auto_approves("c2", "xid", M.REBOOT_VM)
    # A mode that needs two people is never approved by the policy alone.
    assert not policy.auto_approves("c1", "xid", M.HOST_POWER_CYCLE)


def test_without_a_fallback_unknown_faults_are_only_recorded() -> None:
    policy = parse_policy('fallback = "record"\n')
    assert classify(event(alert_name="Other"), policy).action is Action.RECORD_ONLY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cooldown_minutes = ", "not valid TOML"),
        ("cooldown_minutes = -1", "cooldown_minutes"),
        ("surprise = 1", "surprise"),
        ('[[rules]]\nname = "r"\nalerts = ["A"]', "give its mode"),
        ('[[rules]]\nname = "r"\nmode = "REBOOT_VM"', "matches nothing"),
        ('[[rules]]\nname = "r"\nalerts = ["A"]\nmode = "EVICT_WITHOUT_REPLACEMENT"', "never"),
        ('[[rules]]\nname = "r"\nalerts = ["A"]\nmode = "REBOOT"', "rules.0.mode"),
        ('fallback_mode = "EVICT_WITHOUT_REPLACEMENT"', "never automatic"),
        ('fallback = "maybe"', "fallback"),
        (
            '[[rules]]\nname = "r"\nalerts = ["A"]\nmode = "VM_ONLY"\n'
            '[[rules]]\nname = "r"\nalerts = ["B"]\nmode = "VM_ONLY"',
            "unique",
        ),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "my-policy.toml")
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("my-policy.toml: ")
    assert message in line


def test_a_missing_policy_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(tmp_path / "nope.toml")


def test_the_ladder() -> None:
    assert next_mode(M.REBOOT_VM) is M.VM_ONLY
    assert next_mode(M.VM_ONLY) is M.HOST_AWARE
    assert next_mode(M.HOST_AWARE) is M.HOST_AWARE
    assert heavier(M.HOST_AWARE, M.REBOOT_VM)
    assert not heavier(M.REBOOT_VM, M.REBOOT_VM)


def test_a_stuck_nvlink_power_cycles_the_host() -> None:
    verdict = classify(event(alert_name="DmesgXidError", annotations={"xid": "74"}))
    assert verdict.mode is M.HOST_POWER_CYCLE
    assert verdict.rule == "xid-74-nvlink"


def test_a_power_cycle_is_never_the_fallback_for_an_unknown_fault() -> None:
    with pytest.raises(PolicyError, match="HOST_POWER_CYCLE"):
        parse_policy('fallback_mode = "HOST_POWER_CYCLE"')


def test_a_power_cycle_that_did_not_help_escalates_to_another_host() -> None:
    assert next_mode(M.HOST_POWER_CYCLE) is M.HOST_AWARE
    assert heavier(M.HOST_POWER_CYCLE, M.REBOOT_VM)
    assert heavier(M.VM_ONLY, M.HOST_POWER_CYCLE)


def test_auto_approve_naming_a_rule_that_does_not_exist_is_refused_in_one_line() -> None:
    text = POLICY.replace('auto_approve = ["xid"]', 'auto_approve = ["xid", "no-such-rule"]')
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "site.toml")
    message = str(raised.value)
    assert "\n" not in message
    assert "clusters.c1.auto_approve names no rule: no-such-rule" in message
    assert "special-xid" in message  # the names it could have meant
    for fine in ('["*"]', '["fallback"]', '["quiet", "xid"]'):
        parse_policy(POLICY.replace('["xid"]', fine))


def test_a_bad_mode_is_refused_naming_only_the_modes_a_policy_may_choose() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy('[[rules]]\nname = "x"\nalerts = ["A"]\nmode = "REBOT_VM"\n')
    message = str(raised.value)
    assert "rules.0.mode: 'REBOT_VM' is not a mode a policy may choose: REBOOT_VM," in message
    assert "EVICT" not in message


def test_a_partial_policy_file_keeps_the_defaults_it_does_not_change(tmp_path: Path) -> None:
    """Issue 13: a file with only ``cooldown_minutes = 5`` used to have no rules at all."""
    path = tmp_path / "site.toml"
    path.write_text("cooldown_minutes = 5\n[blast_radius]\nmax_open = 3\n")
    policy = load_policy(path)
    assert policy.cooldown_minutes == 5
    assert policy.blast_radius.max_open == 3
    assert policy.blast_radius.max_percent == DEFAULT_POLICY.blast_radius.max_percent
    assert [r.name for r in policy.rules] == [r.name for r in DEFAULT_POLICY.rules]
    guest = classify(event(alert_name="NpdReadonlyFilesystem"), policy)
    assert (guest.rule, guest.mode) == ("guest-faults", M.VM_ONLY)
    disk = classify(event(alert_name="KubeNodeDiskPressure"), policy)
    assert disk.action is Action.RECORD_ONLY


def test_a_files_rules_come_first_and_replace_default_rules_of_their_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[[rules]]\nname = "guest-faults"\nalerts = ["NpdReadonlyFilesystem"]\n'
        'mode = "REBOOT_VM"\n\n'
        '[[rules]]\nname = "site-special"\nalerts = ["SiteAlert"]\nmode = "HOST_AWARE"\n'
    )
    policy = load_policy(path)
    names = [r.name for r in policy.rules]
    assert names[:2] == ["guest-faults", "site-special"]
    assert names.count("guest-faults") == 1
    assert set(names) == {r.name for r in DEFAULT_POLICY.rules} | {"site-special"}
    assert classify(event(alert_name="NpdReadonlyFilesystem"), policy).mode is M.REBOOT_VM
    assert classify(event(alert_name="NpdXfsShutdown"), policy).rule == "fallback"

    path.write_text(path.read_text() + "\nreplace_default_rules = true\n")
    with pytest.raises(PolicyError):  # a top-level key after a table is the table's
        load_policy(path)
    path.write_text("replace_default_rules = true\n" + path.read_text().rsplit("\n", 2)[0])
    assert [r.name for r in load_policy(path).rules] == ["guest-faults", "site-special"]
