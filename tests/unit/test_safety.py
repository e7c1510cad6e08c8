"""The safety policy in the pure core, rule by rule, on explicit event times (no sleeps).

Debounce, auto-resolve, in-place upgrade, cooldown, escalation, hold-for-human, opt-out,
auto-approval and shadow mode, each driven through :func:`correlate.decide` exactly as the
pipeline drives it.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from typing import Any

from remediator.domain import commands, correlate, execution, slots
from remediator.domain.commands import Command, CommandKind
from remediator.domain.correlate import CorrelationConfig, Outcome, decide
from remediator.domain.execution import ReportKind, StepReport
from remediator.domain.lifecycle import Event
from remediator.domain.models import (
    HealthSignal,
    OptOut,
    PolicyEventKind,
    RemediationMode,
    RemediationState,
)
from remediator.domain.policy import Policy, default_policy_text, parse_policy
from remediator.domain.state import InstanceState, record_change
from tests.builders import T0, event, run
from tests.harness import Harness

M = RemediationMode
S = RemediationState


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat()


def firing(minutes: float, alert: str = "NpdKernelDeadlock", **fields: Any) -> HealthSignal:
    return event(alert_name=alert, observed_at=iso(minutes), **fields)


def resolved(minutes: float, alert: str = "NpdKernelDeadlock") -> HealthSignal:
    return event(alert_name=alert, status="RESOLVED", observed_at=iso(minutes))


def config(text: str = "") -> CorrelationConfig:
    """The default policy with ``text`` on top (its rules first, so they win)."""
    base = tomllib.loads(default_policy_text())
    extra = tomllib.loads(text)
    merged = {**base, **extra, "rules": [*extra.get("rules", []), *base["rules"]]}
    return CorrelationConfig(policy=Policy.model_validate(merged))


def feed(
    signals: list[HealthSignal], cfg: CorrelationConfig, state: InstanceState | None = None
) -> tuple[InstanceState, list[correlate.Decision]]:
    decisions = []
    for signal in signals:
        decision = decide(state, signal, correlate.event_time(signal), cfg)
        decisions.append(decision)
        state = decision.state
    assert state is not None
    return state, decisions


def finish(state: InstanceState, when: datetime, outcome: str = "SUCCEEDED") -> InstanceState:
    """Carry the open remediation out (approve, start, steps) to ``outcome`` at ``when``."""
    assert state.open is not None
    rem = state.open.remediation
    if rem.state is S.PENDING_APPROVAL:
        state, _ = record_change(state, rem, Event.APPROVE, now=when, actor="alice", reason="ok")
    state, _ = execution.start(state, when)
    assert state.open is not None
    for index, op in enumerate(state.open.remediation.operations):
        for kind in (
            ReportKind.STARTED,
            ReportKind.DONE if outcome == "SUCCEEDED" else ReportKind.FAILED,
        ):
            report = StepReport(
                remediation_id=rem.id,
                cluster_id="c1",
                instance_id="i1",
                step=index,
                operation_id=op.operation_id,
                kind=kind,
                error="boom",
                observed_at=when,
            )
            state = execution.apply_report(state, report, when).state
        if outcome != "SUCCEEDED":
            break
    assert state.open is None
    return state


# -- debounce -----------------------------------------------------------------------------

DEBOUNCE = """
[[rules]]
name = "deadlock"
alerts = ["NpdKernelDeadlock"]
mode = "REBOOT_VM"
debounce_count = 3
debounce_window_minutes = 10
"""


def test_debounce_opens_only_on_the_nth_failing_signal_within_the_window() -> None:
    _, decisions = feed([firing(0), firing(4), firing(8)], config(DEBOUNCE))
    assert [d.outcome for d in decisions] == [Outcome.DEBOUNCED, Outcome.DEBOUNCED, Outcome.OPENED]
    assert "1 of 3" in decisions[0].verdict.reason  # type: ignore[union-attr]


def test_debounce_forgets_signals_older_than_the_window() -> None:
    _, decisions = feed([firing(0), firing(6), firing(12), firing(20)], config(DEBOUNCE))
    # 12 sees 6 and 12 (0 fell out), 20 sees 12 and 20: never three within 10 minutes.
    assert [d.outcome for d in decisions] == [Outcome.DEBOUNCED] * 4


def test_debounce_is_per_rule() -> None:
    text = DEBOUNCE + '\n[[rules]]\nname = "other"\nalerts = ["NpdXfsShutdown"]\nmode = "VM_ONLY"\n'
    _, decisions = feed([firing(0), firing(1, "NpdXfsShutdown")], config(text))
    assert [d.outcome for d in decisions] == [Outcome.DEBOUNCED, Outcome.OPENED]


# -- auto-resolve -------------------------------------------------------------------------


def test_the_opening_alert_resolving_in_time_auto_resolves_a_waiting_remediation() -> None:
    state, decisions = feed([firing(0), resolved(3)], config())
    assert decisions[1].outcome is Outcome.RESOLVED
    (t,) = decisions[1].transitions
    assert (t.from_state, t.to_state, t.event) == (
        S.PENDING_APPROVAL,
        S.AUTO_RESOLVED,
        "AUTO_RESOLVE",
    )
    assert state.open is None


def test_a_passed_run_of_the_opening_test_auto_resolves_too() -> None:
    failed = run(test="GPU_BURN", completed_at=iso(0))
    passed = run(test="GPU_BURN", result="PASSED", completed_at=iso(2))
    _, decisions = feed([failed, passed], config())
    assert decisions[1].outcome is Outcome.RESOLVED


def test_auto_resolve_of_an_approved_waiting_one_leaves_the_queue() -> None:
    harness = Harness(config().policy, max_running=0)  # execution off: it waits PENDING
    harness.signal(firing(0))
    state = harness.state()
    assert state is not None
    assert state.open is not None
    harness.command(CommandKind.APPROVE, remediation_id=state.open.remediation.id, now=at(1))
    model = harness.fleet.find(0, "c1")
    assert model is not None
    assert model.queued.keys() == {"i1"}
    harness.signal(resolved(2), now=at(2))
    t = harness.transitions()[-1]
    assert (t.from_state, t.to_state) == (S.PENDING, S.AUTO_RESOLVED)
    assert model.queued == {}


def test_clearing_too_late_or_another_alert_or_a_running_one_does_not_auto_resolve() -> None:
    _, late = feed([firing(0), resolved(6)], config())
    assert late[1].outcome is Outcome.RECORDED
    _, other = feed([firing(0), resolved(1, "NpdXfsShutdown")], config())
    assert other[1].outcome is Outcome.RECORDED
    state, _ = feed([firing(0)], config())
    assert state.open is not None
    state, _ = record_change(
        state, state.open.remediation, Event.APPROVE, now=at(0), actor="a", reason="ok"
    )
    state, _ = execution.start(state, at(0))
    _, running = feed([resolved(1)], config(), state)
    assert running[0].outcome is Outcome.RECORDED


def test_a_clear_older_than_the_signal_that_opened_it_does_not_auto_resolve() -> None:
    """Input may come out of order: a pass from before the failure says nothing of it."""
    _, decisions = feed([firing(5), resolved(3)], config())
    assert decisions[1].outcome is Outcome.RECORDED
    _, in_order = feed([firing(5), resolved(6)], config())
    assert in_order[1].outcome is Outcome.RESOLVED


def test_without_a_window_it_auto_resolves_whenever_it_clears_while_waiting() -> None:
    cfg = (
        config("auto_resolve_within_minutes = 5").model_copy()
        if False
        else CorrelationConfig(
            policy=parse_policy("").model_copy(update={"auto_resolve_within_minutes": None})
        )
    )
    _, decisions = feed([firing(0), resolved(600)], cfg)
    assert decisions[1].outcome is Outcome.RESOLVED


# -- in-place upgrade ---------------------------------------------------------------------


def test_a_worse_signal_raises_the_mode_of_a_waiting_remediation() -> None:
    state, decisions = feed(
        [firing(0), firing(1, "NpdXfsShutdown"), firing(2, "IBLinkFlapping")], config()
    )
    assert state.open is not None
    assert state.open.remediation.mode is M.HOST_AWARE
    assert state.open.remediation.rule == "host-hardware-alerts"
    events = [[t.event for t in d.transitions] for d in decisions]
    assert events == [
        ["CREATE_AUTOMATED"],
        ["ATTACH_SIGNAL", "UPGRADE_MODE"],
        ["ATTACH_SIGNAL", "UPGRADE_MODE"],
    ]
    upgrade = decisions[2].transitions[1]
    assert upgrade.from_state == upgrade.to_state == S.PENDING_APPROVAL
    assert "VM_ONLY -> HOST_AWARE" in upgrade.reason


def test_a_lighter_signal_or_a_manual_remediation_is_not_upgraded() -> None:
    state, decisions = feed([firing(0, "IBLinkFlapping"), firing(1)], config())
    assert [t.event for t in decisions[1].transitions] == ["ATTACH_SIGNAL"]
    assert state.open is not None
    assert state.open.remediation.mode is M.HOST_AWARE


# -- cooldown and escalation --------------------------------------------------------------


def test_cooldown_after_a_terminal_state_then_escalation_of_the_same_problem() -> None:
    cfg = config()
    state, _ = feed([firing(0)], cfg)
    state = finish(state, at(5))  # REBOOT_VM carried out, ends at 5
    state, decisions = feed([firing(10), firing(34)], cfg, state)
    assert [d.outcome for d in decisions] == [Outcome.BLOCKED, Outcome.BLOCKED]
    assert "cooldown" in decisions[0].verdict.reason  # type: ignore[union-attr]
    state, decisions = feed([firing(36)], cfg, state)
    assert decisions[0].outcome is Outcome.OPENED
    assert state.open is not None
    assert state.open.remediation.mode is M.VM_ONLY  # the same problem came back: escalated
    assert "escalated" in (state.open.remediation.reason or "")
    state = finish(state, at(40), "FAILED")
    state, _ = feed([firing(80)], cfg, state)
    assert state.open is not None
    assert state.open.remediation.mode is M.HOST_AWARE


def test_a_flapping_alert_opens_one_remediation_per_cooldown() -> None:
    signals = []
    for minute in range(0, 120, 2):
        signals += [firing(minute), resolved(minute + 1)]
    _, decisions = feed(signals, config())
    opened = [d for d in decisions if d.outcome is Outcome.OPENED]
    resolved_ = [d for d in decisions if d.outcome is Outcome.RESOLVED]
    # Open at 0, auto-resolved at 1, cooldown to 31, open at 32, ... : 4 in two hours.
    assert len(opened) == 4
    assert len(resolved_) == 4


def test_no_escalation_for_a_different_problem_or_after_the_window() -> None:
    cfg = config()
    state, _ = feed([firing(0)], cfg)
    state = finish(state, at(5))
    state, _ = feed([firing(40, "SomethingElse")], cfg, state)  # the fallback rule
    assert state.open is not None
    assert state.open.remediation.mode is M.REBOOT_VM  # another problem: not escalated
    assert "escalated" not in (state.open.remediation.reason or "")
    cfg2 = config()
    state, _ = feed([firing(0)], cfg2)
    state = finish(state, at(5))
    state, _ = feed([firing(60 * 30)], cfg2, state)
    assert state.open is not None
    assert state.open.remediation.mode is M.REBOOT_VM  # 30 h later: outside the window


# -- hold for a human ---------------------------------------------------------------------


def test_after_n_remediations_in_the_window_a_human_takes_over_with_one_event() -> None:
    cfg = config("[hold_for_human]\nmax_remediations = 2\nwindow_hours = 24\n")
    state, _ = feed([firing(0)], cfg)
    state = finish(state, at(1))
    state, _ = feed([firing(40)], cfg, state)
    state = finish(state, at(41))
    state, decisions = feed([firing(80), firing(85), firing(200)], cfg, state)
    assert [d.outcome for d in decisions] == [Outcome.BLOCKED] * 3
    events = [e for d in decisions for e in d.events]
    assert [e.kind for e in events] == [PolicyEventKind.HELD_FOR_HUMAN]
    assert "left to a human" in events[0].reason
    # A day after the first of them, the window has room again.
    state, decisions = feed([firing(60 * 24 + 10)], cfg, state)
    assert decisions[0].outcome is Outcome.OPENED


def test_an_operator_lifts_the_hold_and_the_next_failing_signal_opens_again() -> None:
    cfg = config("[hold_for_human]\nmax_remediations = 2\nwindow_hours = 24\n")
    state, _ = feed([firing(0)], cfg)
    state = finish(state, at(1))
    state, _ = feed([firing(40)], cfg, state)
    state = finish(state, at(41))
    state, decisions = feed([firing(80)], cfg, state)
    assert decisions[0].outcome is Outcome.BLOCKED

    lift = Command(
        command_id="lift-1",
        kind=CommandKind.LIFT_HOLD,
        cluster_id=state.cluster_id,
        instance_id=state.instance_id,
        principal="alice",
        issued_at=at(90),
        reason="GPU replaced by the vendor",
    )
    handled = commands.handle(state, lift, at(90), cfg.policy)
    state = handled.state
    explanation = handled.reply.explanation
    assert explanation is not None
    assert explanation.hold_lifted is not None
    assert (explanation.hold_lifted.by, explanation.hold_lifted.reason) == (
        "alice",
        "GPU replaced by the vendor",
    )
    assert explanation.held_for_human_at is None
    state, decisions = feed([firing(100)], cfg, state)
    assert decisions[0].outcome is Outcome.OPENED


# -- opt-out, auto-approval, shadow -------------------------------------------------------


def test_an_opted_out_instance_opens_nothing() -> None:
    state = InstanceState.empty("c1", "i1").model_copy(
        update={"opt_out": OptOut(reason="customer benchmark", by="alice", at=at(0))}
    )
    _, decisions = feed([firing(1)], config(), state)
    assert decisions[0].outcome is Outcome.BLOCKED
    assert "opted out by alice: customer benchmark" in decisions[0].verdict.reason  # type: ignore[union-attr]


def test_a_cluster_can_auto_approve_chosen_faults() -> None:
    cfg = config('[clusters.c1]\nauto_approve = ["reboot-faults"]\n')
    state, decisions = feed([firing(0)], cfg)
    created, approved = decisions[0].transitions
    assert created.to_state is S.PENDING_APPROVAL
    assert (approved.from_state, approved.to_state, approved.actor) == (
        S.PENDING_APPROVAL,
        S.PENDING,
        "Auto-Approved",
    )
    assert state.open is not None
    assert state.open.remediation.reviewed_by == "Auto-Approved"
    assert slots.waiting(state.open.remediation)  # straight to the executor's queue
    # Another rule, or another cluster, still waits for a human.
    state, decisions = feed([firing(0, "IBLinkFlapping")], cfg)
    assert [t.to_state for t in decisions[0].transitions] == [S.PENDING_APPROVAL]
    other = feed([firing(0, instance_id="i1", cluster_id="c2")], cfg)[1][0]
    assert [t.to_state for t in other.transitions] == [S.PENDING_APPROVAL]


def test_shadow_mode_publishes_what_it_would_do_and_opens_nothing() -> None:
    for text in (
        "shadow = true",
        "[clusters.c1]\nshadow = true",
        DEBOUNCE.replace('mode = "REBOOT_VM"', 'mode = "REBOOT_VM"\nshadow = true').replace(
            "debounce_count = 3", "debounce_count = 1"
        ),
    ):
        state, decisions = feed([firing(0), firing(1), firing(40)], config(text))
        assert [d.outcome for d in decisions] == [Outcome.SHADOWED] * 3
        assert state.open is None
        events = [e for d in decisions for e in d.events]
        # One event per cooldown, not one per signal.
        assert [e.kind for e in events] == [PolicyEventKind.SHADOW_OPEN] * 2, text
        assert "would open REBOOT_VM" in events[0].reason


def test_policy_event_ids_are_stable_on_replay() -> None:
    cfg = config("shadow = true")
    signal = firing(0)
    first = decide(None, signal, at(0), cfg)
    again = decide(None, signal, at(0), cfg)
    assert first.events[0].event_id == again.events[0].event_id


# -- explain ------------------------------------------------------------------------------


def test_every_decision_that_matters_is_remembered_with_its_rule_and_reason() -> None:
    harness = Harness(config().policy)
    harness.signal(
        firing(0),
        firing(1),
        resolved(2),
        firing(3, severity="WARNING"),  # changed nothing: not worth a line
        run(result="PASSED", completed_at=iso(4)),  # likewise
        firing(5, "KubeNodeDiskPressure"),  # failing, recorded only: worth a line
    )
    explained = harness.command(CommandKind.EXPLAIN).explanation
    assert explained is not None
    outcomes = [(d.outcome, d.rule) for d in reversed(explained.decisions)]
    assert outcomes == [
        ("OPENED", "reboot-faults"),
        ("ATTACHED", "reboot-faults"),
        ("RESOLVED", "alert:NpdKernelDeadlock"),
        ("RECORDED", "record-only"),
    ]
    assert explained.decisions[-1].remediation_id is not None
    assert explained.last_signal_at == at(5)
    harness.signal(*(firing(m, alert="KubeNodeDiskPressure") for m in range(10, 90)))
    bounded = harness.command(CommandKind.EXPLAIN).explanation
    assert bounded is not None
    assert len(bounded.decisions) == 50


def test_the_cooldown_runs_on_event_time_when_signals_run_ahead_of_the_clock() -> None:
    """A backlog replayed fast: the service's clock stays at T0 while events span hours."""
    cfg = config()
    state = None
    created = 0
    for minute in range(0, 120, 2):
        for signal in (firing(minute), resolved(minute + 1)):
            decision = decide(state, signal, T0, cfg)  # now: always T0
            state = decision.state
            created += sum(t.event == "CREATE_AUTOMATED" for t in decision.transitions)
    assert created == 4  # at 0, 32, 64, 96: one per 30 minutes of event time
