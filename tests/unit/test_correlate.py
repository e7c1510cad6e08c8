"""Correlation decisions for one instance: open, attach, duplicate, non-failing, stale."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remediator.domain import correlate, lifecycle
from remediator.domain import state as instance
from remediator.domain.correlate import (
    SYSTEM_PRINCIPAL,
    CorrelationConfig,
    Outcome,
    decide,
)
from remediator.domain.lifecycle import Event
from remediator.domain.models import (
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from remediator.domain.state import InstanceState
from tests.builders import T0, event, run

NOW = T0 + timedelta(seconds=3)


def test_failed_run_opens_automated_remediation_pending_approval() -> None:
    signal = run(test="DCGM_DIAG")
    decision = decide(None, signal, NOW)
    assert decision.outcome is Outcome.OPENED
    (transition,) = decision.transitions
    rem = transition.remediation
    assert rem.state is RemediationState.PENDING_APPROVAL
    assert rem.trigger is RemediationTrigger.AUTOMATED
    assert rem.mode is RemediationMode.HOST_AWARE
    assert rem.active_health_check_run_id == str(signal.run_id)
    assert rem.passive_health_check_event_id is None
    assert rem.requested_by == SYSTEM_PRINCIPAL
    assert rem.create_time == rem.update_time == NOW
    assert (transition.sequence, transition.from_state, transition.to_state) == (
        1,
        None,
        RemediationState.PENDING_APPROVAL,
    )
    assert transition.transition_id == f"{rem.id}:1"
    assert decision.state.open is not None
    assert decision.state.open.remediation == rem


def test_critical_firing_event_opens_with_policy_mode_and_event_id() -> None:
    signal = event(alert_name="NpdReadonlyFilesystem")
    decision = decide(None, signal, NOW)
    rem = decision.transitions[0].remediation
    assert rem.mode is RemediationMode.VM_ONLY
    assert rem.passive_health_check_event_id == str(signal.event_id)
    assert rem.active_health_check_run_id is None


def test_same_signal_again_is_a_duplicate_and_changes_nothing() -> None:
    signal = run()
    first = decide(None, signal, NOW)
    again = decide(first.state, signal, NOW + timedelta(minutes=1))
    assert again.outcome is Outcome.DUPLICATE
    assert again.transitions == ()
    assert again.state == first.state


def test_replay_of_the_same_input_regenerates_the_same_ids() -> None:
    signal = run()
    a = decide(None, signal, NOW).transitions[0]
    b = decide(None, signal, NOW + timedelta(seconds=30)).transitions[0]
    assert (a.transition_id, a.remediation_id, a.sequence) == (
        b.transition_id,
        b.remediation_id,
        b.sequence,
    )


def test_later_failing_signal_attaches_to_the_open_remediation() -> None:
    opener = run()
    first = decide(None, opener, NOW)
    second_signal = event(observed_at="2026-11-24T12:01:00Z")
    second = decide(first.state, second_signal, NOW + timedelta(minutes=1))
    assert second.outcome is Outcome.ATTACHED
    (transition,) = second.transitions
    rem = transition.remediation
    assert rem.id == first.transitions[0].remediation_id
    assert transition.sequence == 2
    assert transition.from_state is transition.to_state is RemediationState.PENDING_APPROVAL
    assert transition.event == Event.ATTACH_SIGNAL
    assert rem.active_health_check_run_id == str(opener.run_id)
    assert rem.passive_health_check_event_id == str(second_signal.event_id)
    assert [s.id for s in rem.signals] == [str(opener.run_id), str(second_signal.event_id)]


def test_attaching_never_opens_a_second_remediation() -> None:
    state = decide(None, run(), NOW).state
    for minute in range(1, 6):
        state = decide(state, run(), NOW + timedelta(minutes=minute)).state
    assert state.open is not None
    assert len(state.open.remediation.signals) == 6
    assert state.open.sequence == 6
    assert state.past == []


def test_second_failing_signal_of_same_kind_keeps_the_first_seed_id() -> None:
    first_run, second_run = run(), run()
    state = decide(None, first_run, NOW).state
    attached = decide(state, second_run, NOW).transitions[0].remediation
    assert attached.active_health_check_run_id == str(first_run.run_id)
    assert str(second_run.run_id) in {s.id for s in attached.signals}


@pytest.mark.parametrize(
    "signal",
    [
        run(result="PASSED"),
        run(result="SKIPPED"),
        event(status="RESOLVED"),
        event(severity="WARNING"),
        event(severity="INFO"),
        event(alert_name="KubeNodeDiskPressure"),
        event(alert_name="SlurmNodeUnavailable"),
    ],
    ids=["passed", "skipped", "resolved", "warning", "info", "disk-pressure", "slurm"],
)
def test_non_actionable_signal_is_recorded_but_opens_nothing(signal: object) -> None:
    decision = decide(None, signal, NOW)  # type: ignore[arg-type]
    assert decision.outcome is Outcome.RECORDED
    assert decision.transitions == ()
    assert decision.state.open is None
    assert correlate.signal_key(signal) in decision.state.seen  # type: ignore[arg-type]


def test_non_failing_signal_does_not_attach_an_alert_is_only_linked() -> None:
    state = decide(None, run(), NOW).state
    assert state.open is not None
    passed = decide(state, run(result="PASSED", test="GPU_BURN"), NOW)
    assert passed.outcome is Outcome.RECORDED
    assert passed.transitions == ()
    warning = decide(state, event(severity="WARNING"), NOW)
    assert warning.outcome is Outcome.RECORDED
    (linked,) = warning.transitions
    assert linked.event == "LINK_ALERT"
    assert linked.remediation.signals == state.open.remediation.signals


def test_dedup_memory_expires_by_event_time() -> None:
    config = CorrelationConfig(dedup_ttl=timedelta(hours=1))
    old = run(result="PASSED", completed_at="2026-11-24T10:00:00Z")
    state = decide(None, old, NOW, config).state
    newer = run(result="PASSED", completed_at="2026-11-24T12:00:00Z")
    state = decide(state, newer, NOW, config).state
    assert correlate.signal_key(old) not in state.seen
    assert correlate.signal_key(newer) in state.seen


def test_signal_older_than_the_dedup_horizon_is_stale_and_ignored() -> None:
    config = CorrelationConfig(dedup_ttl=timedelta(hours=1))
    state = decide(None, run(result="PASSED"), NOW, config).state
    late = run(completed_at="2026-11-24T10:00:00Z")
    decision = decide(state, late, NOW, config)
    assert decision.outcome is Outcome.STALE
    assert decision.state == state


def test_late_signal_within_the_horizon_still_counts() -> None:
    state = decide(None, run(result="PASSED"), NOW).state
    late = run(completed_at="2026-11-24T11:00:00Z")
    assert decide(state, late, NOW).outcome is Outcome.OPENED


def test_attached_signals_are_bounded() -> None:
    config = CorrelationConfig(max_signals_per_remediation=2)
    state = decide(None, run(), NOW, config).state
    state = decide(state, run(), NOW, config).state
    capped = decide(state, run(), NOW, config)
    assert capped.outcome is Outcome.RECORDED
    assert capped.transitions == ()
    assert capped.state.open is not None
    assert len(capped.state.open.remediation.signals) == 2


def test_terminal_change_closes_the_remediation_and_frees_the_instance() -> None:
    state = decide(None, run(), NOW).state
    assert state.open is not None
    state, transition = instance.record_change(
        state, state.open.remediation, Event.REJECT, now=NOW, actor="alice", reason="no"
    )
    assert transition.to_state is RemediationState.CANCELLED
    assert transition.remediation.end_time == NOW  # the full record, for the archive
    assert state.open is None
    assert state.past[0].id == transition.remediation_id
    after_cooldown = (NOW + timedelta(minutes=31)).isoformat()
    assert decide(state, run(), NOW).outcome is Outcome.BLOCKED  # cooldown
    reopened = decide(state, run(completed_at=after_cooldown), NOW + timedelta(minutes=31))
    assert reopened.outcome is Outcome.OPENED
    assert reopened.transitions[0].remediation_id != transition.remediation_id


def test_record_creation_refuses_a_second_open_remediation() -> None:
    state = decide(None, run(), NOW).state
    assert state.open is not None
    with pytest.raises(lifecycle.IllegalTransition, match="already has open remediation"):
        instance.record_creation(
            state,
            state.open.remediation.model_copy(update={"id": "other"}),
            Event.CREATE_AUTOMATED,
            now=NOW,
            actor="x",
            reason="y",
        )


def test_refused_change_leaves_state_unchanged() -> None:
    state = decide(None, run(), NOW).state
    assert state.open is not None
    with pytest.raises(lifecycle.IllegalTransition):
        instance.record_change(
            state, state.open.remediation, Event.SUCCEED, now=NOW, actor="x", reason="y"
        )
    assert state.open.sequence == 1


def test_state_round_trips_through_json() -> None:
    state = decide(None, run(), NOW).state
    state = decide(state, event(), NOW).state
    restored = InstanceState.model_validate_json(state.model_dump_json())
    assert restored == state
