"""The CLI's text views of API answers: aligned tables, evidence, detail views."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from remediator.console import table
from remediator.domain.models import (
    LinkedAlert,
    LinkedAlertAnnotation,
    Remediation,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
    SignalKind,
    SignalRef,
)
from remediator.domain.replies import Explanation, SafetyView
from tests.builders import T0

RUN_ID = "0b5b0f64-7d1e-4b43-9d7e-3f5b1d0c2a11"
EVENT_ID = "9c1d2e3f-0000-4b43-9d7e-3f5b1d0c2a11"
STAMP = "2026-11-24T12:00:00Z"


def record(**changes: Any) -> dict[str, Any]:
    """A remediation as the API answers it (the real model, dumped to JSON)."""
    fields: dict[str, Any] = {
        "id": "5b2cbc2d-a364-5ee8-990e-065e0d64b96b",
        "cluster_id": "cl-us-east-1a",
        "instance_id": "inst-7f3a",
        "instance_name": "gpu-node-7",
        "mode": RemediationMode.HOST_AWARE,
        "trigger": RemediationTrigger.AUTOMATED,
        "state": RemediationState.PENDING_APPROVAL,
        "requested_by": "system:remediator",
        "create_time": T0 + timedelta(seconds=41, microseconds=545000),
        "update_time": T0 + timedelta(seconds=41),
        "active_health_check_run_id": RUN_ID,
        "signals": [
            SignalRef(
                kind=SignalKind.ACTIVE_RUN,
                id=RUN_ID,
                name="DCGM_DIAG",
                status="FAILED",
                observed_at=T0,
            )
        ],
    }
    fields.update(changes)
    return Remediation(**fields).model_dump(mode="json")


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_columns_are_aligned_two_spaces_apart_without_trailing_blanks() -> None:
    text = table.render(["A", "LONGER"], [["wide cell", "x"], ["y", ""]])
    assert lines(text) == ["A          LONGER", "wide cell  x", "y"]


def test_a_remediation_row_shows_short_enum_values_and_utc_time_to_the_second() -> None:
    row = table.remediation_row(record())
    assert row == [
        "5b2cbc2d-a364-5ee8-990e-065e0d64b96b",
        "cl-us-east-1a",
        "inst-7f3a",
        "PENDING_APPROVAL",
        "HOST_AWARE",
        "AUTOMATED",
        "2026-11-24 12:00:41",
        "DCGM_DIAG FAILED run 0b5b0f64",
    ]


def test_the_list_view_has_a_header_and_one_aligned_row_per_remediation() -> None:
    manual = record(
        id="ticket-1234",
        trigger=RemediationTrigger.MANUAL,
        mode=RemediationMode.VM_ONLY,
        state=RemediationState.PENDING,
        reason="NVLink errors reported by the customer",
        active_health_check_run_id=None,
        signals=[],
    )
    header, first, second = lines(table.remediations([record(), manual]))
    assert header.split() == [
        "ID", "CLUSTER", "INSTANCE", "STATE", "MODE", "TRIGGER", "CREATED", "(UTC)", "EVIDENCE"
    ]  # fmt: skip
    # Every column starts at the same offset on every line.
    for column in ("CLUSTER", "STATE", "MODE", "EVIDENCE"):
        offset = header.index(column)
        assert first[offset - 2 : offset] == "  "
        assert first[offset] != " "
        assert second[offset - 2 : offset] == "  "
        assert second[offset] != " "
    assert second.startswith("ticket-1234 ")
    assert "VM_ONLY" in second
    assert "MANUAL" in second
    assert second.endswith("manual: NVLink errors reported by the customer")


def test_an_empty_list_says_so() -> None:
    assert table.remediations([]) == "no remediations"


def test_evidence_names_the_alert_with_its_xid_and_counts_later_signals() -> None:
    alert = SignalRef(
        kind=SignalKind.PASSIVE_EVENT,
        id=EVENT_ID,
        name="DmesgXidError",
        status="CRITICAL FIRING",
        observed_at=T0,
    )
    later = alert.model_copy(update={"id": "11111111-2222-4333-8444-555555555555"})
    linked = LinkedAlert(
        passive_health_check_alert_id=EVENT_ID,
        alert_name="DmesgXidError",
        severity="PHC_SEVERITY_CRITICAL",
        cluster_id="cl-us-east-1a",
        target_vm="gpu-node-7",
        started_at=T0,
        annotations={"xid": "79", "gpu": "3"},
        annotation=LinkedAlertAnnotation(title="t", description="d", summary_line="s"),
    )
    value = record(signals=[alert, later], linked_alerts=[linked], active_health_check_run_id=None)
    assert table.evidence(value) == "DmesgXidError xid 79 event 9c1d2e3f (+1)"


def test_evidence_falls_back_to_the_signal_ids_and_is_clipped() -> None:
    assert table.evidence(record(signals=[])) == "run 0b5b0f64"
    long_reason = record(
        signals=[],
        active_health_check_run_id=None,
        reason="word " * 40,
        trigger=RemediationTrigger.MANUAL,
    )
    text = table.evidence(long_reason)
    assert len(text) == table.EVIDENCE_WIDTH
    assert text.endswith("…")
    assert text.startswith("manual: word word")


def test_missing_fields_from_an_older_worker_show_as_a_dash() -> None:
    row = table.remediation_row({"id": "x", "state": "PENDING"})
    assert row == ["x", "-", "-", "PENDING", "-", "-", "-", "-"]


def test_the_detail_view_shows_what_is_set_with_signals() -> None:
    value = record(
        state=RemediationState.PENDING,
        reviewed_by="operator",
        review_time=T0 + timedelta(minutes=2),
        review_comment="try a reboot first",
        mode=RemediationMode.REBOOT_VM,
    )
    text = table.remediation(value)
    assert "instance:     inst-7f3a (gpu-node-7)" in lines(text)
    assert "reviewed by:  operator at 2026-11-24 12:02:00" in lines(text)
    assert "comment:      try a reboot first" in lines(text)
    assert "error:" not in text  # unset fields are left out
    assert "signals:" in lines(text)
    assert any(line.endswith(RUN_ID) for line in lines(text))


def test_the_detail_view_says_who_approved_and_what_is_still_needed() -> None:
    evict = RemediationMode.EVICT_WITHOUT_REPLACEMENT
    first = {"principal": "olga", "at": T0 + timedelta(minutes=1), "mode": evict}
    waiting = record(approvals_required=2, approvals=[first])
    assert (
        "approvals:    olga (EVICT_WITHOUT_REPLACEMENT) at 2026-11-24 12:01:00; 1 more needed, "
        "from someone else"
    ) in lines(table.remediation(waiting))
    second = {"principal": "otto", "at": T0 + timedelta(minutes=3), "mode": evict}
    done = record(state=RemediationState.PENDING, approvals_required=2, approvals=[first, second])
    assert any(
        line.startswith("approvals:") and line.endswith("(2 of 2)")
        for line in lines(table.remediation(done))
    )
    assert "approvals:" not in table.remediation(record())


def test_cluster_rows_use_the_fleet_summary_and_tolerate_the_minimal_form() -> None:
    full = {
        "cluster_id": "cl-a",
        "known_instances": 20,
        "open_remediations": {"PENDING_APPROVAL": 3, "RUNNING": 1, "PENDING": 0},
        "paused": {"reason": "maintenance", "paused_by": "alice", "paused_at": STAMP},
        "tripped_at": None,
        "blast_radius_open": 4,
        "blast_radius_limit": 4,
        "opened_last_hour": 6,
        "rate_budget_per_hour": 20,
        "as_of": "2026-11-24T12:05:00Z",
    }  # fmt: skip
    header, first, second = lines(table.clusters([full, {"cluster_id": "cl-b"}]))
    assert header.split()[:3] == ["CLUSTER", "INSTANCES", "OPEN"]
    assert "PENDING_APPROVAL 3, RUNNING 1" in first
    assert "4/4" in first
    assert "6/20" in first
    assert first.endswith("maintenance (alice, 2026-11-24 12:00:00)")
    assert second.split() == ["cl-b", "-", "-", "-", "-", "-", "-"]
    assert table.clusters([]) == "no clusters known yet"


def test_the_safety_view_counts_the_blast_radius_and_says_why_it_is_paused() -> None:
    view = SafetyView(
        cluster_id="cl-a",
        paused={"reason": "rack swap", "by": "alice", "at": T0},
        tripped_at=T0,
        known_instances=20,
        unhealthy_instances=["i1", "i2"],
        limit=4,
        resume_at=2,
        opened_last_hour=2,
        rate_budget_per_hour=None,
        as_of=T0,
    ).model_dump(mode="json")
    text = lines(table.safety(view))
    assert "paused:           rack swap (alice, 2026-11-24 12:00:00)" in text
    assert "blast radius:     2 open of 4 allowed (resumes at 2 once tripped)" in text
    assert "tripped:          since 2026-11-24 12:00:00" in text
    assert "opened last hour: 2/no limit" in text
    assert "unhealthy:        i1, i2" in text


def test_the_explanation_lists_the_decisions() -> None:
    answer = Explanation.model_validate(
        {
            "cluster_id": "cl-a",
            "instance_id": "i1",
            "open_remediation": record(),
            "decisions": [
                {
                    "at": "2026-11-24T12:00:00Z",
                    "signal": {
                        "kind": "ACTIVE_RUN",
                        "id": RUN_ID,
                        "name": "DCGM_DIAG",
                        "status": "FAILED",
                        "observed_at": "2026-11-24T12:00:00Z",
                    },
                    "outcome": "OPENED",
                    "rule": "host-hardware-tests",
                    "reason": "active test DCGM_DIAG failed",
                    "remediation_id": "5b2cbc2d-a364-5ee8-990e-065e0d64b96b",
                }
            ],
        }
    ).model_dump(mode="json")
    text = lines(table.explanation(answer))
    assert "open:     5b2cbc2d-a364-5ee8-990e-065e0d64b96b PENDING_APPROVAL HOST_AWARE" in text
    header = next(line for line in text if line.startswith("AT (UTC)"))
    row = text[text.index(header) + 1]
    assert row.split()[:6] == ["2026-11-24", "12:00:00", "DCGM_DIAG", "FAILED", "run", "0b5b0f64"]
    assert "OPENED" in row
    assert "host-hardware-tests" in row


def test_the_explanation_shows_the_verification_in_one_line() -> None:
    note = {
        "remediation_id": "r-1",
        "mode": "REMEDIATION_MODE_REBOOT_VM",
        "since": "2026-11-24T12:05:00Z",
        "deadline": "2026-11-24T12:35:00Z",
    }
    shown = {
        "PENDING": "PENDING r-1, health due by 2026-11-24 12:35:00",
        "VERIFIED": "VERIFIED r-1 by run:abc at 2026-11-24 12:10:00",
        "FAILED": "FAILED r-1 at 2026-11-24 12:35:00: the next failing signal escalates at once",
    }
    for state, expected in shown.items():
        verification = {**note, "state": state}
        if state != "PENDING":
            verification["at"] = "2026-11-24T12:10:00Z" if state == "VERIFIED" else note["deadline"]
        if state == "VERIFIED":
            verification["by"] = "run:abc"
        answer = Explanation.model_validate(
            {"cluster_id": "cl-a", "instance_id": "i1", "verification": verification}
        ).model_dump(mode="json")
        assert f"verification: {expected}" in lines(table.explanation(answer))


def test_the_safety_view_and_the_explanation_name_the_freeze() -> None:
    frozen = {
        "name": "year-end",
        "reason": "launch",
        "start": T0,
        "end": T0 + timedelta(days=2),
        "domains": ["rack=r1"],
    }
    view = SafetyView(
        cluster_id="cl-a",
        paused=None,
        tripped_at=None,
        known_instances=3,
        unhealthy_instances=[],
        limit=1,
        resume_at=0,
        opened_last_hour=0,
        rate_budget_per_hour=None,
        waiting=["i2"],
        freezes=[frozen],
        next_freezes=[{**frozen, "start": T0 + timedelta(days=7), "end": T0 + timedelta(days=9)}],
    ).model_dump(mode="json")
    text = lines(table.safety(view))
    expected = "year-end in rack=r1 2026-11-24 12:00:00 -> 2026-11-26 12:00:00: launch"
    assert f"frozen:           {expected}" in text
    assert "waiting:          i2" in text
    assert any(line.startswith("next freeze:") and "2026-12-01" in line for line in text)
    explained = Explanation(cluster_id="cl-a", instance_id="i2", freeze=frozen)
    explanation = lines(table.explanation(explained.model_dump(mode="json")))
    assert f"freeze:   {expected}" in explanation
