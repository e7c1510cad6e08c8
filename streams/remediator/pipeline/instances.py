"""The instance agent: the single writer of every instance's remediations (invariant 4).

For each message on the inbox (keyed by instance) it loads the instance's state from the
``instances`` table, applies the pure core (:func:`decide` for a health signal,
:func:`commands.handle` for an API command), publishes the resulting transitions and
waits for the broker's ack, and only then writes the new state. API commands get their
reply on the replies topic last.

Why this order (DESIGN.md, the dedup trap): the state value holds both "this signal (or
command) was seen" and "this is what it did". If the worker dies after publishing but
before the state lands, the input is replayed and the same transitions are re-published
with the same ``transition_id`` and ``sequence`` (ids are deterministic). If it dies after
the state lands, the transitions were already acknowledged. Nothing can be marked seen
without its effect published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

import faust
from aiokafka.partitioner import murmur2
from faust.types import StreamT
from pydantic import ValidationError

from remediator import failpoints
from remediator.domain import commands, correlate, execution, ids, safety, slots
from remediator.domain.commands import Claim, Command, CommandKind
from remediator.domain.correlate import CorrelationConfig, InstanceState, Outcome, decide
from remediator.domain.execution import Grant, StepReport
from remediator.domain.models import (
    HealthSignal,
    PolicyEvent,
    Remediation,
    RemediationTransition,
    dump_json,
)
from remediator.domain.replies import Reply
from remediator.domain.safety import (
    AdmissionRequest,
    AdmissionVerdict,
    ClusterSafety,
    ControlKind,
)
from remediator.domain.slots import ClusterSlots, SlotRequest
from remediator.pipeline.executor import Executor
from remediator.pipeline.messages import InboxMessage, Route
from remediator.pipeline.publish import publish, publish_all

log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in (murmur2, as Java's)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def _slot_messages(requests: list[SlotRequest]) -> list[tuple[bytes, bytes]]:
    return [
        (
            ids.cluster_key(r.cluster_id).encode(),
            dump_json(InboxMessage(slot=r, route=Route.CLUSTER)),
        )
        for r in requests
    ]


def _admissions(requests: list[AdmissionRequest]) -> list[tuple[bytes, bytes]]:
    return [
        (
            ids.safety_key(r.cluster_id).encode(),
            dump_json(InboxMessage(admission=r, route=Route.SAFETY)),
        )
        for r in requests
    ]


def register_instances(
    app: faust.App,
    *,
    inbox: faust.TopicT,
    transitions: faust.TopicT,
    replies: faust.TopicT,
    table: faust.types.TableT[bytes, bytes],
    partitions: int,
    config: CorrelationConfig,
    clock: Callable[[], datetime],
    executor: Executor,
    max_running_per_cluster: int,
    policy_events: faust.TopicT,
) -> faust.types.AgentT[bytes]:
    async def emit(
        key: bytes,
        produced: tuple[RemediationTransition, ...],
        events: tuple[PolicyEvent, ...] = (),
        requests: tuple[AdmissionRequest, ...] = (),
    ) -> None:
        """Publish transitions, policy events, and the slot and admission requests they
        call for; await every ack (all before the caller writes its state)."""
        admissions = [*requests, *safety.requests_for(list(produced))]
        await publish_all(
            [
                (transitions, [(key, dump_json(t)) for t in produced]),
                (policy_events, [(key, dump_json(e)) for e in events]),
                (inbox, [*_slot_messages(slots.requests_for(produced)), *_admissions(admissions)]),
            ]
        )
        if produced:
            await failpoints.hit("instances.after_publish")

    async def request_slots(requests: list[SlotRequest]) -> None:
        await publish(inbox, _slot_messages(requests))

    def store(key: bytes, state: InstanceState) -> None:
        table[key] = dump_json(state)
        executor.observe(key, state)

    async def reply(answer: Reply) -> None:
        await replies.send(key=answer.command_id.encode(), value=dump_json(answer))

    def load(key: bytes) -> InstanceState | None:
        raw = table.get(key)
        return None if raw is None else InstanceState.model_validate_json(raw)

    async def on_signal(key: bytes, signal: HealthSignal) -> None:
        state = load(key)
        decision = decide(state, signal, clock(), config)
        await emit(key, decision.transitions, decision.events, decision.requests)
        if decision.state is not state:
            store(key, decision.state)
            if decision.transitions:
                await failpoints.hit("instances.after_state_write", app.producer.flush)
        if decision.transitions:
            transition = decision.transitions[-1]
            log.info(
                "%s remediation %s on %s (%s)",
                decision.outcome.value.lower(),
                transition.remediation_id,
                key.decode(),
                transition.reason,
            )
        elif decision.outcome in (Outcome.BLOCKED, Outcome.SHADOWED) and decision.verdict:
            log.info("%s: %s", key.decode(), decision.verdict.reason)

    async def on_verdict(key: bytes, verdict: AdmissionVerdict) -> None:
        state = load(key)
        decision = correlate.apply_verdict(state, verdict, clock(), config)
        await emit(key, decision.transitions, decision.events, decision.requests)
        if decision.state is not state:
            store(key, decision.state)
            if decision.transitions:
                await failpoints.hit("instances.after_state_write", app.producer.flush)
        if decision.outcome is Outcome.BLOCKED:
            log.info("%s: not opened: %s", key.decode(), verdict.reason)
        for transition in decision.transitions:
            log.info("opened remediation %s on %s", transition.remediation_id, key.decode())

    async def on_admission(key: bytes, request: AdmissionRequest) -> None:
        current = load_safety(key)
        admission = safety.handle(current, request, config.policy, clock())
        await answer_admission(key, current, admission)

    async def answer_admission(
        key: bytes, current: ClusterSafety | None, admission: safety.Admission
    ) -> None:
        # Events and verdicts first, then the state: a crash in between replays the
        # request, which is answered the same way (remembered) or recomputed identically.
        # Keyed by the cluster, as alerting sees it (not by the internal safety key).
        await publish_all(
            [
                (policy_events, [(e.cluster_id.encode(), dump_json(e)) for e in admission.events]),
                (
                    inbox,
                    [
                        (
                            ids.instance_key(v.cluster_id, v.instance_id).encode(),
                            dump_json(InboxMessage(verdict=v)),
                        )
                        for v in admission.verdicts
                    ],
                ),
            ]
        )
        for event in admission.events:
            log.warning("%s: %s", event.kind.value, event.reason)
        if admission.safety != current:
            table[key] = dump_json(admission.safety)

    def load_safety(key: bytes) -> ClusterSafety | None:
        raw = table.get(key)
        return None if raw is None else ClusterSafety.model_validate_json(raw)

    async def on_safety_command(key: bytes, command: Command) -> None:
        current = load_safety(key)
        if command.kind in (CommandKind.PAUSE, CommandKind.RESUME):
            kind = ControlKind.PAUSE if command.kind is CommandKind.PAUSE else ControlKind.RESUME
            admission = safety.control(
                current,
                command.cluster_id,
                kind,
                reason=command.reason or "",
                principal=command.principal,
                now=clock(),
                cause=command.command_id,
            )
            await answer_admission(key, current, admission)
            current = admission.safety
        view = current or ClusterSafety(cluster_id=command.cluster_id)
        await reply(Reply(command_id=command.command_id, safety=view))

    async def on_command(key: bytes, command: Command) -> None:
        state = load(key)
        handled = commands.handle(state, command, clock(), config.policy)
        await emit(key, handled.transitions)
        if handled.state is not state:
            store(key, handled.state)
        for transition in handled.transitions:
            log.info(
                "remediation %s on %s: %s -> %s by %s",
                transition.remediation_id,
                key.decode(),
                transition.from_state,
                transition.to_state.value,
                transition.actor,
            )
        await reply(handled.reply)

    async def on_claim(key: bytes, command: Command) -> None:
        raw = table.get(key)
        existing = None if raw is None else Claim.model_validate_json(raw)
        kept, refusal = commands.claim(existing, command)
        if refusal is not None:
            await reply(refusal)
            return
        # Forward first: a crash before the claim lands replays this, and the instance
        # answers a repeated command from its remembered replies.
        forward = InboxMessage(command=command, route=Route.INSTANCE)
        instance_key = ids.instance_key(command.cluster_id, command.instance_id).encode()
        await publish(inbox, [(instance_key, dump_json(forward))])
        if existing != kept:
            table[key] = dump_json(kept)

    async def on_grant(key: bytes, grant: Grant) -> None:
        state = load(key)
        now = clock()
        started = execution.start(state, grant, now)
        await emit(key, started.transitions)
        if started.give_back:
            await request_slots(
                [slots.give_back(grant.cluster_id, grant.instance_id, grant.remediation_id, now)]
            )
        if started.state is not state:
            store(key, started.state)
            await failpoints.hit("instances.after_start", app.producer.flush)
        for transition in started.transitions:
            log.info("remediation %s on %s: RUNNING", transition.remediation_id, key.decode())

    async def on_report(key: bytes, report: StepReport) -> None:
        state = load(key)
        applied = execution.apply_report(state, report, clock())
        if applied.ignored:
            log.debug("report %s ignored: %s", report.operation_id, applied.ignored)
        await emit(key, applied.transitions)
        if applied.state is not state:
            store(key, applied.state)
            await failpoints.hit(
                f"instances.after_step_{report.kind.value.lower()}", app.producer.flush
            )
        for transition in applied.transitions:
            log.info(
                "remediation %s on %s: %s",
                transition.remediation_id,
                key.decode(),
                transition.reason,
            )

    async def on_slot(key: bytes, request: SlotRequest) -> None:
        raw = table.get(key)
        current = None if raw is None else ClusterSlots.model_validate_json(raw)
        decision = slots.handle(current, request, max_running_per_cluster)
        # Grants first, then the state: a crash in between re-sends the same grants, which
        # the instances ignore if already applied.
        if decision.grants:
            await publish(
                inbox,
                [
                    (
                        ids.instance_key(request.cluster_id, entry.instance_id).encode(),
                        dump_json(
                            InboxMessage(
                                grant=Grant(
                                    remediation_id=entry.remediation_id,
                                    cluster_id=request.cluster_id,
                                    instance_id=entry.instance_id,
                                )
                            )
                        ),
                    )
                    for entry in decision.grants
                ],
            )
            await failpoints.hit("slots.after_grants")
        if decision.slots != current:
            table[key] = dump_json(decision.slots)

    def held_instances(partition: int, cluster_id: str) -> Iterator[InstanceState]:
        prefix = f"{cluster_id}/".encode()
        for key, raw in table.items():
            if key.startswith(prefix) and partition_of(key, partitions) == partition:
                yield InstanceState.model_validate_json(raw)

    async def on_scan(partition: int, command: Command) -> None:
        # issue10-sdk (GET /v1/compute/clusters): CLUSTERS is scanned like a cluster-wide
        # LIST; the answer is the clusters among this partition's keys (pure, in domain).
        if command.kind is CommandKind.CLUSTERS:
            held = (k for k in table if partition_of(k, partitions) == partition)
            clusters = commands.known_clusters(held)
            await reply(Reply(command_id=command.command_id, cluster_ids=clusters))
            return
        records: list[Remediation] = []
        for state in held_instances(partition, command.cluster_id):
            records.extend(commands.all_remediations(state))
        selected = commands.select(records, command)
        await reply(Reply(command_id=command.command_id, remediations=selected))

    async def instances(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            key: bytes = event.message.key
            log.debug(
                "inbox[%d]@%d key %s", event.message.partition, event.message.offset, key.decode()
            )
            try:
                message = InboxMessage.model_validate_json(event.value)
            except ValidationError as exc:
                # Only this service writes the inbox: a bad message is a bug or a foreign
                # writer. Skip it loudly rather than wedge the partition.
                log.error(
                    "skipping unreadable inbox message at offset %d: %s",
                    event.message.offset,
                    exc,
                )
                continue
            command, signal = message.command, message.signal
            if signal is not None:
                await on_signal(key, signal)
            elif message.report is not None:
                await on_report(key, message.report)
            elif message.grant is not None:
                await on_grant(key, message.grant)
            elif message.slot is not None:
                await on_slot(key, message.slot)
            elif message.admission is not None:
                await on_admission(key, message.admission)
            elif message.verdict is not None:
                await on_verdict(key, message.verdict)
            elif command is None:  # pragma: no cover - ruled out by InboxMessage
                continue
            elif message.route is Route.CLAIM:
                await on_claim(key, command)
            elif message.route is Route.SCAN:
                await on_scan(event.message.partition, command)
            elif message.route is Route.SAFETY:
                await on_safety_command(key, command)
            else:
                await on_command(key, command)

    return app.agent(inbox, name="instances")(instances)
