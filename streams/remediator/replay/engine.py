"""The replay engine: signals through the pipeline's own handler, in memory, one policy.

Nothing is re-implemented here: each signal goes through ``handlers.on_signal`` with a
real :class:`~remediator.pipeline.context.Context` over a real
:class:`~remediator.pipeline.fleet.Fleet`, exactly as the state owner applies it (the
correlation, the safety rules, then ``Context.settle``: blast radius resumed, queued
proposals admitted, stale recommendations expired). The context's tables are stores
that keep nothing (the handler reads only the fleet); what the batch would publish is
captured instead of sent.

What is modelled as shadow mode models it: nobody approves, nothing is executed. The
context is built with no execution slots (``max_running_per_cluster = 0``), so an
auto-approved remediation becomes ``PENDING`` and stays ``PENDING``, a recommendation
stays ``PENDING_APPROVAL`` until it expires on event time, and no verification starts.
Signals are applied in event-time order (the input record's timestamp, as the worker
stamps them), ties broken by topic, partition and offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from remediator.domain import ids
from remediator.domain.correlate import CorrelationConfig, Decision, Outcome
from remediator.domain.models import (
    DecisionRecord,
    HealthSignal,
    PolicyEvent,
    RemediationTransition,
)
from remediator.domain.state import InstanceState
from remediator.metrics import Tally
from remediator.pipeline.context import Batch, Context, Item, Origin, Tables, Topics
from remediator.pipeline.fleet import ClusterModel, Fleet
from remediator.pipeline.handlers import on_signal
from remediator.pipeline.messages import InboxMessage
from remediator.pipeline.outbox import Record

#: Topic names the captured outputs are tagged with (nothing is sent anywhere).
TOPICS = Topics(
    transitions="replay-transitions",
    policy_events="replay-policy-events",
    replies="replay-replies",
    inbox="replay-inbox",
    dead_letters="replay-dead-letters",
)

#: Inputs applied per batch (a batch's writes are dropped at its end).
BATCH = 500


@dataclass(frozen=True, slots=True)
class Timed:
    """One recorded signal and where it was read: its event time orders the replay."""

    at: datetime
    signal: HealthSignal
    topic: str = ""
    partition: int = 0
    offset: int = 0

    def order(self) -> tuple[datetime, str, int, int]:
        return (self.at, self.topic, self.partition, self.offset)


@dataclass
class Run:
    """What one policy decided over the replayed signals."""

    transitions: list[RemediationTransition] = field(default_factory=list)
    events: list[PolicyEvent] = field(default_factory=list)
    #: Signals by outcome, and refusals by reason (``BlockReason`` values).
    outcomes: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    signals: int = 0

    #: Each instance's story (key ``cluster/instance``): what was decided and what
    #: changed, in order, as (what is compared, what is shown).
    stories: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)

    def tell(self, key: str, fact: tuple[str, ...], text: str) -> None:
        self.stories.setdefault(key, []).append((fact, text))


def describe_decision(decision: DecisionRecord) -> str:
    rule = f" rule {decision.rule}" if decision.rule else ""
    return (
        f"{decision.at.isoformat()} {decision.signal.name} {decision.signal.status}: "
        f"{decision.outcome}{rule} ({decision.reason})"
    )


def describe_transition(transition: RemediationTransition) -> str:
    remediation = transition.remediation
    mode = remediation.mode.value.removeprefix("REMEDIATION_MODE_")
    came = transition.from_state.value if transition.from_state is not None else "-"
    return (
        f"{transition.occurred_at.isoformat()} remediation {transition.remediation_id} "
        f"{mode}: {came} -> {transition.to_state.value} ({transition.reason})"
    )


class _Recorder(Tally):
    """The batch's tally, which also hands each decision to the run."""

    def __init__(self, on_decision: Callable[[HealthSignal, Decision], None]) -> None:
        super().__init__()
        self._on_decision = on_decision

    def decided(self, signal: HealthSignal, decision: Decision) -> None:
        super().decided(signal, decision)
        self._on_decision(signal, decision)


class _Void:
    """A table that keeps nothing: the signal handler reads only the in-memory fleet."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.changelog = f"{name}-changelog"

    def get(self, key: bytes) -> bytes | None:
        return None

    def record(self, key: bytes, value: bytes | None) -> Record:
        return Record(self.changelog, key, value, 0)

    def apply(self, key: bytes, value: bytes | None) -> None:
        pass


def _tables() -> Tables:
    void = {name: _Void(name) for name in ("state", "archive", "decisions", "claims")}
    return Tables(**void)  # type: ignore[arg-type]


class _ReplayContext(Context):
    """The pipeline's context, capturing what it would publish instead of batching it."""

    run: Run

    def put(
        self,
        model: ClusterModel,
        state: InstanceState,
        transitions: Sequence[RemediationTransition] = (),
        events: Sequence[PolicyEvent] = (),
        decision: DecisionRecord | None = None,
    ) -> None:
        super().put(model, state, transitions, events, decision)
        run = self.run
        if decision is not None:
            said = (decision.signal.id, decision.outcome, decision.rule or "")
            run.tell(
                state.key,
                ("decision", *said, decision.remediation_id or ""),
                describe_decision(decision),
            )
        for transition in transitions:
            run.transitions.append(transition)
            remediation = transition.remediation
            came = transition.from_state.value if transition.from_state is not None else "-"
            fact = ("transition", remediation.id, came, transition.to_state, remediation.mode)
            run.tell(state.key, tuple(str(part) for part in fact), describe_transition(transition))

    def publish_events(self, events: Sequence[PolicyEvent]) -> None:
        super().publish_events(events)
        self.run.events.extend(events)


def replay(
    signals: Iterable[Timed],
    config: CorrelationConfig,
    *,
    on_signal_done: Callable[[], None] | None = None,
) -> Run:
    """Apply ``signals`` (already in event-time order) under ``config``'s policy."""
    run = Run()
    ctx = _ReplayContext(
        fleet=Fleet(),
        tables=_tables(),
        topics=TOPICS,
        config=config,
        max_running_per_cluster=0,  # execution modelled off: see the module docstring
        partitions=1,
    )
    ctx.run = run

    def decided(signal: HealthSignal, decision: Decision) -> None:
        outcome = decision.outcome.value
        run.outcomes[outcome] = run.outcomes.get(outcome, 0) + 1
        if decision.outcome in (Outcome.BLOCKED, Outcome.QUEUED):
            reason = decision.blocked.value if decision.blocked is not None else "other"
            run.refusals[reason] = run.refusals.get(reason, 0) + 1

    for number, timed in enumerate(signals, start=1):
        if number % BATCH == 1:
            ctx.batch = Batch(tally=_Recorder(decided))  # the last batch's writes: dropped
        message = InboxMessage.of_signal(timed.signal)
        key = ids.instance_key(timed.signal.cluster_id, timed.signal.instance_id).encode()
        origin = Origin(timed.topic, timed.partition, timed.offset)
        on_signal(ctx, Item(0, key, message, timed.at, origin))
        run.signals += 1
        if on_signal_done is not None:
            on_signal_done()
    return run


def in_order(signals: Iterable[Timed], cluster: str | None = None) -> list[Timed]:
    """The signals of ``cluster`` (all when None) in event-time order."""
    chosen = [t for t in signals if cluster is None or t.signal.cluster_id == cluster]
    return sorted(chosen, key=Timed.order)
