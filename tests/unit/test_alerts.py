"""Passive alerts linked to a remediation, in the SDK's ``LinkedAlert`` shape."""

from __future__ import annotations

from remediator.domain.alerts import XID_MNEMONICS, link, xid_events
from remediator.domain.commands import CommandKind
from remediator.domain.models import RemediationState
from tests.builders import event, run
from tests.harness import Harness


def fire(name: str, minute: int, **fields: object) -> object:
    return event(alert_name=name, observed_at=f"2026-11-24T12:{minute:02d}:00Z", **fields)


def test_the_alert_that_opens_a_remediation_is_its_first_linked_alert() -> None:
    h = Harness()
    opener = event(
        alert_name="DmesgXidError",
        annotations={"xid": "79", "gpu": "3", "summary": "GPU 3 fell off the bus"},
    )
    h.signal(opener)
    (created,) = h.transitions()
    (alert,) = created.remediation.linked_alerts
    assert alert.passive_health_check_alert_id == str(opener.event_id)
    assert (alert.alert_name, alert.severity) == ("DmesgXidError", "PHC_SEVERITY_CRITICAL")
    assert (alert.cluster_id, alert.instance_id, alert.target_vm) == ("c1", "i1", "gpu-node-1")
    assert alert.started_at == opener.observed_at
    assert alert.resolved_at is None
    assert alert.annotations == {"xid": "79", "gpu": "3", "summary": "GPU 3 fell off the bus"}
    assert alert.annotation.summary_line == "GPU 3 fell off the bus"
    assert alert.annotation.xid is not None
    assert [(x.xid_code, x.count, x.mnemonic) for x in alert.annotation.xid.events] == [
        ("79", 1, "GPU has fallen off the bus")
    ]
    assert alert.node_remediation_intent_id == created.remediation_id


def test_alerts_firing_while_open_are_linked_and_resolving_sets_resolved_at() -> None:
    h = Harness()
    h.signal(run(completed_at="2026-11-24T12:00:00Z"))  # opened by a test run: no alert yet
    h.signal(fire("GpuPcieReplayRateHigh", 1, severity="WARNING"))  # not failing: linked only
    h.signal(fire("GpuPcieReplayRateHigh", 3, status="RESOLVED", severity="WARNING"))
    h.signal(fire("NpdKernelDeadlock", 4))  # failing: attached and linked in one change
    transitions = h.transitions()
    assert [t.event for t in transitions] == [
        "CREATE_AUTOMATED",
        "LINK_ALERT",
        "LINK_ALERT",
        "ATTACH_SIGNAL",
    ]
    assert [t.sequence for t in transitions] == [1, 2, 3, 4]
    final = transitions[-1].remediation.linked_alerts
    assert [(a.alert_name, a.severity) for a in final] == [
        ("GpuPcieReplayRateHigh", "PHC_SEVERITY_WARNING"),
        ("NpdKernelDeadlock", "PHC_SEVERITY_CRITICAL"),
    ]
    assert final[0].resolved_at is not None
    assert final[0].resolved_at.minute == 3
    assert final[1].resolved_at is None


def test_the_opener_resolving_auto_resolves_with_its_resolved_at() -> None:
    h = Harness()
    h.signal(fire("NpdKernelDeadlock", 0))
    h.signal(fire("NpdKernelDeadlock", 2, status="RESOLVED"))
    resolved = h.transitions()[-1]
    assert resolved.to_state is RemediationState.AUTO_RESOLVED
    (alert,) = resolved.remediation.linked_alerts
    assert alert.resolved_at is not None


def test_a_repeat_or_an_unmatched_resolve_links_nothing() -> None:
    h = Harness()
    opener = fire("NpdKernelDeadlock", 0)
    h.signal(opener)
    state = h.state()
    assert state is not None
    assert state.open is not None
    assert link(state.open.remediation, opener) is None  # the same occurrence again
    assert link(state.open.remediation, fire("IBLinkFlapping", 1, status="RESOLVED")) is None


def test_slurm_reason_and_unknown_xids() -> None:
    h = Harness()
    h.signal(run())
    h.signal(fire("SlurmNodeUnavailable", 1, annotations={"reason": "Kill task failed"}))
    h.signal(fire("DmesgXidError", 2, annotations={"xid": "13,13,999"}))
    linked = h.transitions()[-1].remediation.linked_alerts
    assert linked[0].annotation.slurm_node_unavailable is not None
    assert linked[0].annotation.slurm_node_unavailable.reason == "Kill task failed"
    xid = linked[1].annotation.xid
    assert xid is not None
    assert [(x.xid_code, x.count, x.mnemonic) for x in xid.events] == [
        ("13", 2, "Graphics Engine Exception"),
        ("999", 1, ""),
    ]
    assert xid_events({"gpu": "1"}) is None


def test_the_xid_catalogue_names_the_codes_fleets_meet() -> None:
    wanted = [
        "13",
        "31",
        "43",
        "45",
        "48",
        "61",
        "62",
        "63",
        "64",
        "68",
        "69",
        "74",
        "79",
        "92",
        "94",
        "95",
        "119",
        "120",
    ]
    assert all(XID_MNEMONICS[code] for code in wanted)


def test_a_remediation_closed_by_an_operator_keeps_its_links_in_the_archive() -> None:
    h = Harness()
    h.signal(fire("NpdKernelDeadlock", 0))
    state = h.state()
    assert state is not None
    assert state.open is not None
    h.command(CommandKind.REJECT, remediation_id=state.open.remediation.id)
    (archived,) = h.archived()
    assert [a["alert_name"] for a in archived["linked_alerts"]] == ["NpdKernelDeadlock"]  # type: ignore[index]
