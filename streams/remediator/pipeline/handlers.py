"""One handler per kind of input the state owner applies; :data:`HANDLERS` picks it.

Each handler takes the batch's :class:`~remediator.pipeline.context.Context` and one
:class:`~remediator.pipeline.context.Item`, asks the pure core what to do, and records
the outcome in the context. None of them awaits anything: the inputs of a batch are
applied one after the other, in order, against the in-memory state, and the processor
makes the whole batch durable afterwards.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from remediator.domain import (
    commands,
    correlate,
    execution,
    freeze,
    ids,
    safety,
    topology,
    verification,
)
from remediator.domain.commands import Claim, Command, CommandKind
from remediator.domain.correlate import Outcome
from remediator.domain.execution import ReportKind
from remediator.domain.models import dump_json
from remediator.domain.replies import (
    ClusterSummary,
    DomainSafety,
    ErrorCode,
    FreezeView,
    Reply,
    SafetyView,
)
from remediator.domain.safety import ControlKind
from remediator.domain.state import InstanceState
from remediator.logs import about

from .context import Context, Item
from .fleet import ClusterModel
from .messages import InboxMessage, Route, cluster_partition

log = logging.getLogger("remediator.pipeline")

Handler = Callable[[Context, Item], None]


def on_signal(ctx: Context, item: Item) -> None:
    """A health signal: correlate it with the instance, maybe open a remediation."""
    signal = item.message.signal
    assert signal is not None  # noqa: S101 - routed here because it is one
    model = ctx.cluster(item.partition, signal.cluster_id)
    decision = correlate.decide(
        model.get(signal.instance_id), signal, item.now, ctx.config, model.view(signal.instance_id)
    )
    if decision.outcome in (Outcome.DUPLICATE, Outcome.STALE):
        log.debug("%s %s", decision.outcome.value.lower(), correlate.signal_key(signal))
        ctx.batch.tally.decided(signal, decision)
        return
    if decision.cluster is not None:
        ctx.put_cluster(model, decision.cluster)
    ctx.put(model, decision.state, decision.transitions, decision.events, decision.record)
    ctx.settle(model, item.now)
    ctx.batch.tally.decided(signal, decision)
    if decision.outcome is Outcome.OPENED or decision.outcome is Outcome.RESOLVED:
        transition = decision.transitions[-1]
        log.info(
            "%s remediation %s on %s (%s)",
            decision.outcome.value.lower(),
            transition.remediation_id,
            decision.state.key,
            transition.reason,
            extra=about(signal.cluster_id, signal.instance_id, transition.remediation_id),
        )
    elif decision.verdict is not None and log.isEnabledFor(logging.DEBUG):
        # Debug only: a signal attached to an open remediation, or refused in a storm,
        # would be a line per signal; the transitions, the cluster's policy events and
        # explain tell each instance's story.
        log.debug("%s %s: %s", decision.state.key, decision.outcome.value, decision.verdict.reason)


def on_report(ctx: Context, item: Item) -> None:
    """The executor's report on one step: record it (the writer is the only one who may)."""
    report = item.message.report
    assert report is not None  # noqa: S101
    model = ctx.cluster(item.partition, report.cluster_id)
    state = model.get(report.instance_id)
    applied = execution.apply_report(state, report, item.now)
    if applied.ignored:
        log.debug("report %s ignored: %s", report.operation_id, applied.ignored)
        return
    # A success starts the check that it worked (domain/verification.py).
    state = verification.begin(applied.state, applied.transitions, ctx.policy, model.latest)
    ctx.put(model, state, applied.transitions)
    ctx.settle(model, item.now)
    if report.kind is not ReportKind.STARTED:
        ctx.batch.tally.step(applied.transitions[0].remediation.operations[report.step])
    for transition in applied.transitions:
        log.info(
            "remediation %s on %s: %s",
            transition.remediation_id,
            applied.state.key,
            transition.reason,
            extra=about(report.cluster_id, report.instance_id, transition.remediation_id),
        )


def on_kick(ctx: Context, item: Item) -> None:
    """Look at a cluster again: its limits may allow more than its last change did."""
    kick = item.message.kick
    assert kick is not None  # noqa: S101
    ctx.settle(ctx.cluster(item.partition, kick.cluster_id), item.now)


_READS = frozenset({CommandKind.GET, CommandKind.LIST, CommandKind.EXPLAIN})


def on_command(ctx: Context, item: Item) -> None:
    """An API command on one instance."""
    command = _command(item)
    model = ctx.cluster(item.partition, command.cluster_id)
    state = model.get(command.instance_id)
    if command.kind is CommandKind.AUDIT and state is None:
        return  # a call about an instance never seen: on the audit topic only
    refused = _frozen_create(ctx, model, state, command)
    if refused is not None:
        ctx.reply(refused)
        return
    handled = commands.handle(
        state,
        command,
        item.now,
        ctx.policy,
        archived=lambda: ctx.archived(command.cluster_id, command.instance_id),
        decisions=lambda: ctx.decisions(command.cluster_id, command.instance_id),
        queue_place=lambda: model.place(command.instance_id),
    )
    if command.kind not in _READS and (state is None or handled.state is not state):
        ctx.put(model, handled.state, handled.transitions)
        ctx.publish_events(handled.events)
        ctx.settle(model, item.now)
    for transition in handled.transitions:
        log.info(
            "remediation %s on %s: %s -> %s by %s",
            transition.remediation_id,
            handled.state.key,
            transition.from_state,
            transition.to_state.value,
            transition.actor,
            extra=about(command.cluster_id, command.instance_id, transition.remediation_id),
        )
    if command.kind is not CommandKind.AUDIT:  # told, not asked: no one waits
        ctx.reply(_with_freeze(ctx, model, handled.reply))


def _with_freeze(ctx: Context, model: ClusterModel, reply: Reply) -> Reply:
    """An explanation says which change freeze holds the instance (the cluster's clock is
    here, not in the pure core's view of one instance)."""
    explanation = reply.explanation
    if explanation is None or not ctx.policy.freezes:
        return reply
    state = model.get(explanation.instance_id)
    domains = topology.names(state.domain) if state is not None else ()
    holding = ctx.policy.freezes.first(model.cluster_id, _clock(model), domains)
    if holding is None:
        return reply
    explained = explanation.model_copy(update={"freeze": freeze_view(holding)})
    return reply.model_copy(update={"explanation": explained})


#: The roles (api/auth.py's Role values) that may create a remediation by hand while a
#: change freeze holds.
_FREEZE_OVERRIDE = frozenset({"admin", "unrestricted"})


def _frozen_create(
    ctx: Context, model: ClusterModel, state: InstanceState | None, command: Command
) -> Reply | None:
    """The refusal of a CREATE while a change freeze holds the instance, unless an admin
    asks with a reason (a replayed create of the open remediation passes: it is done)."""
    if command.kind is not CommandKind.CREATE or not ctx.policy.freezes:
        return None
    asked = command.remediation_id or command.command_id
    if state is not None and state.open is not None and state.open.remediation.id == asked:
        return None
    domains = topology.names(state.domain) if state is not None else ()
    holding = ctx.policy.freezes.first(
        command.cluster_id, model.latest or command.issued_at, domains
    )
    if holding is None or (command.role in _FREEZE_OVERRIDE and command.reason):
        return None
    message = (
        f"{holding.describe()}; while it holds only an admin may create a remediation "
        "by hand, and must give a reason"
    )
    return Reply(
        command_id=command.command_id,
        error_code=ErrorCode.FAILED_PRECONDITION,
        error_message=message,
    )


def on_cluster_command(ctx: Context, item: Item) -> None:
    """An API command on a whole cluster: list it, show or change its safety state."""
    command = _command(item)
    model = ctx.cluster(item.partition, command.cluster_id)
    if command.kind is CommandKind.LIST:
        records = [
            record
            for state in model.instances.values()
            for record in commands.all_remediations(state, _archive_of(ctx, state))
        ]
        ctx.reply(commands.list_reply(command, records))
        return
    if command.kind in (CommandKind.PAUSE, CommandKind.RESUME):
        kind = ControlKind.PAUSE if command.kind is CommandKind.PAUSE else ControlKind.RESUME
        record, events = safety.control(
            model.record,
            kind,
            reason=command.reason or "",
            principal=command.principal,
            now=item.now,
            cause=command.command_id,
        )
        if record != model.record:
            ctx.put_cluster(model, record)
            ctx.publish_events(events)
            ctx.settle(model, item.now)  # resumed: what waited in its queue may open now
            for event in events:
                log.warning(
                    "%s: %s", event.kind.value, event.reason, extra=about(command.cluster_id)
                )
    ctx.reply(Reply(command_id=command.command_id, safety=safety_view(ctx, model)))


def on_fleet_command(ctx: Context, item: Item) -> None:
    """Asked of every partition: the clusters it holds (ones with at least one instance:
    a read of an unknown cluster leaves nothing behind), or a fleet-wide LIST."""
    command = _command(item)
    models = [m for m in ctx.fleet.partitions.get(item.partition, {}).values() if m.instances]
    if command.kind is CommandKind.LIST:
        # Closed remediations live in the archive, read per instance: skip it when the
        # filter asks only for open ones ("what is PENDING_APPROVAL anywhere").
        closed = not command.states or any(s.is_terminal for s in command.states)
        records = [
            record
            for model in models
            for state in model.instances.values()
            for record in commands.all_remediations(
                state, _archive_of(ctx, state) if closed else tuple
            )
        ]
        ctx.reply(commands.list_reply(command, records))
        return
    summaries = sorted((summary(ctx, m) for m in models), key=lambda c: c.cluster_id)
    ctx.reply(Reply(command_id=command.command_id, clusters=summaries))


def _archive_of(ctx: Context, state: InstanceState) -> commands.Archived:
    return lambda: ctx.archived(state.cluster_id, state.instance_id)


def on_claim(ctx: Context, item: Item) -> None:
    """Reserve a client-specified remediation id across all clusters, then pass the CREATE
    on to its cluster's partition."""
    command = _command(item)
    key = item.key
    raw = ctx.read(ctx.tables.claims, key)
    existing = None if raw is None else Claim.model_validate_json(raw)
    kept, refusal = commands.claim(existing, command)
    if refusal is not None:
        ctx.reply(refusal)
        return
    # Forward first: a crash before the claim lands replays this, and the instance
    # answers a repeated command from its remembered replies.
    partition = cluster_partition(command.cluster_id, ctx.partitions)
    instance_key = ids.instance_key(command.cluster_id, command.instance_id).encode()
    ctx.forward(
        partition, instance_key, InboxMessage(command=command, route=Route.INSTANCE), item.now
    )
    if existing != kept:
        ctx.write(ctx.tables.claims, key, dump_json(kept))


#: Offsets remembered per input partition: the newest this many dead-lettered ones. A
#: record is read again only from its partition's committed offset on, and no more than
#: this many bad inputs lie between a commit and the next in practice.
MAX_DEAD_LETTER_MARKS = 1000


def on_unreadable(ctx: Context, item: Item) -> None:
    """Dead-letter an input that cannot be used, once: the offsets dead-lettered from
    each input partition are remembered, so the same record read again (a re-seek after
    a rebalance, another worker taking the partition over) is not dead-lettered twice.
    Only a crash between the dead letter's ack and the mark's may repeat one (the same
    source_topic, partition and offset: a consumer drops it by those)."""
    unreadable = item.message.unreadable
    assert unreadable is not None  # noqa: S101
    letter = unreadable.letter
    raw = ctx.read(ctx.tables.claims, item.key)
    marks: list[int] = [] if raw is None else orjson.loads(raw)
    if letter.offset in marks:
        log.debug(
            "%s[%d]@%d read again: already dead-lettered",
            letter.source_topic,
            letter.partition,
            letter.offset,
        )
        return
    ctx.dead_letter(unreadable.raw_key, dump_json(letter))
    marks = sorted([*marks, letter.offset])[-MAX_DEAD_LETTER_MARKS:]
    ctx.write(ctx.tables.claims, item.key, orjson.dumps(marks))
    tally = ctx.batch.tally.dead_letters
    tally[letter.source_topic] = tally.get(letter.source_topic, 0) + 1
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.error,
    )


def safety_view(ctx: Context, model: ClusterModel) -> SafetyView:
    """A cluster's safety state, counted on the cluster's own (event-time) clock."""
    known = len(model.instances)
    radius = ctx.policy.blast_radius
    return SafetyView(
        cluster_id=model.cluster_id,
        paused=model.record.paused,
        tripped_at=model.record.tripped_at,
        known_instances=known,
        unhealthy_instances=sorted(model.unhealthy),
        limit=radius.limit(known),
        resume_at=radius.resume_at(known),
        opened_last_hour=model.budget_used(),
        rate_budget_per_hour=ctx.policy.rate_budget_per_hour,
        running=sorted(model.running),
        queued=model.next_queued(),
        waiting=model.next_waiting(),
        as_of=model.latest,
        # A scan of the cluster's instances: a read an operator asks for, not a decision.
        opted_out={
            instance: state.opt_out
            for instance, state in sorted(model.instances.items())
            if state.opt_out is not None
        },
        domains=domain_safety(ctx, model),
        freezes=[freeze_view(h) for h in _holding(ctx, model)],
        next_freezes=[
            freeze_view(h) for h in ctx.policy.freezes.upcoming(model.cluster_id, _clock(model))
        ],
    )


def _clock(model: ClusterModel) -> datetime:
    """The cluster's event-time clock (now, for a cluster with no signal yet)."""
    return model.latest or datetime.now(UTC)


def _holding(ctx: Context, model: ClusterModel) -> list[freeze.Holding]:
    return ctx.policy.freezes.holding(model.cluster_id, _clock(model))


def freeze_view(holding: freeze.Holding) -> FreezeView:
    entry = holding.freeze
    return FreezeView(
        name=entry.name,
        reason=entry.reason,
        start=holding.start,
        end=holding.end,
        domains=entry.domains,
        allow_running=entry.allow_running,
    )


def domain_safety(ctx: Context, model: ClusterModel) -> list[DomainSafety]:
    """The cluster's failure domains the policy limits, by name (a read: it may scan the
    unhealthy instances)."""
    limits = ctx.policy.blast_radius.domains
    keys = set(limits.keys)
    unhealthy: dict[str, list[str]] = {}
    for instance in sorted(model.unhealthy):
        state = model.get(instance)
        for name in topology.names(state.domain if state is not None else {}):
            unhealthy.setdefault(name, []).append(instance)
    tripped = model.record.tripped_domains
    names = {*model.domain_known, *tripped}
    return [
        DomainSafety(
            domain=name,
            known_instances=(known := model.domain_known.get(name, 0)),
            unhealthy_instances=unhealthy.get(name, []),
            limit=limits.limit(known),
            resume_at=limits.resume_at(known),
            tripped_at=tripped.get(name),
        )
        for name in sorted(names)
        if topology.key_of(name) in keys or name in tripped
    ]


def summary(ctx: Context, model: ClusterModel) -> ClusterSummary:
    """A cluster in one line of the fleet view: open remediations by state and what
    holds automation back."""
    known = len(model.instances)
    by_state = Counter(
        state.open.remediation.state.value
        for state in model.instances.values()
        if state.open is not None
    )
    return ClusterSummary(
        cluster_id=model.cluster_id,
        known_instances=known,
        open_remediations=dict(sorted(by_state.items())),
        paused=model.record.paused,
        tripped_at=model.record.tripped_at,
        freezes=[freeze_view(h) for h in _holding(ctx, model)],
        blast_radius_open=len(model.unhealthy),
        blast_radius_limit=ctx.policy.blast_radius.limit(known),
        opened_last_hour=model.budget_used(),
        rate_budget_per_hour=ctx.policy.rate_budget_per_hour,
        as_of=model.latest,
    )


def _command(item: Item) -> Command:
    command = item.message.command
    assert command is not None  # noqa: S101
    return command


def handler_for(message: InboxMessage) -> Handler:
    """The handler of one inbox message."""
    if message.signal is not None:
        return on_signal
    if message.report is not None:
        return on_report
    if message.kick is not None:
        return on_kick
    if message.unreadable is not None:
        return on_unreadable
    return HANDLERS[message.route]


#: API commands by route (signals, reports and kicks are told apart by what they carry).
HANDLERS: dict[Route, Handler] = {
    Route.INSTANCE: on_command,
    Route.CLUSTER: on_cluster_command,
    Route.CLAIM: on_claim,
    Route.FLEET: on_fleet_command,
}
