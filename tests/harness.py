"""The state owner's handlers driven in memory: the pipeline's decisions without Kafka.

:class:`Harness` applies health signals, API commands and executor reports through the
real handlers (``pipeline/handlers.py``) and the real in-memory fleet, with dictionaries
standing in for the Faust tables. What a batch would publish is collected, so a test
reads transitions, policy events and replies as a downstream consumer would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime

import orjson

from remediator.domain import ids
from remediator.domain.commands import Command, CommandKind
from remediator.domain.correlate import CorrelationConfig
from remediator.domain.execution import StepReport
from remediator.domain.models import HealthSignal, PolicyEvent, RemediationTransition
from remediator.domain.policy import DEFAULT_POLICY, Policy
from remediator.domain.replies import Reply
from remediator.domain.state import InstanceState
from remediator.pipeline.context import Batch, Context, Item, Origin, Tables, Topics
from remediator.pipeline.fleet import Fleet
from remediator.pipeline.handlers import handler_for
from remediator.pipeline.messages import InboxMessage, Kick, Route, dead_letter_key
from remediator.pipeline.outbox import Record
from tests.builders import T0

TOPICS = Topics(
    transitions="transitions",
    policy_events="policy-events",
    replies="replies",
    inbox="inbox",
    dead_letters="dead-letters",
)


class MemoryStore:
    """A table: what ``pipeline.store.TableStore`` offers, on a dict, one partition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.changelog = f"{name}-changelog"
        self.data: dict[bytes, bytes] = {}

    def partition_of(self, key: bytes) -> int:
        return 0

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def record(self, key: bytes, value: bytes | None) -> Record:
        return Record(self.changelog, key, value, 0)

    def apply(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def put(self, key: bytes, value: bytes | None) -> Record:
        self.apply(key, value)
        return self.record(key, value)

    def persisted(self, partition: int, offset: int) -> None:
        pass

    def items(self, partitions: Iterable[int]) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.data.items())


class Harness:
    def __init__(
        self, policy: Policy = DEFAULT_POLICY, *, max_running: int = 2, **config: object
    ) -> None:
        self.config = CorrelationConfig(policy=policy, **config)  # type: ignore[arg-type]
        self.max_running = max_running
        self.fleet = Fleet()
        self.tables = Tables(
            state=MemoryStore("state"),  # type: ignore[arg-type]
            archive=MemoryStore("archive"),  # type: ignore[arg-type]
            decisions=MemoryStore("decisions"),  # type: ignore[arg-type]
            claims=MemoryStore("claims"),  # type: ignore[arg-type]
        )
        self.outputs: list[Record] = []
        self.offset = 0

    def apply(self, *messages: InboxMessage, now: datetime = T0) -> Batch:
        """Apply one batch of inbox messages, in order, and make it 'durable'."""
        ctx = Context(
            fleet=self.fleet,
            tables=self.tables,
            topics=TOPICS,
            config=self.config,
            max_running_per_cluster=self.max_running,
            partitions=1,
        )
        for message in messages:
            self.offset += 1
            item = Item(0, _key(message), message, now, Origin("inbox", 0, self.offset))
            handler_for(message)(ctx, item)
        batch = ctx.batch
        for (_, key), (store, value) in batch.logs.items():
            store.put(key, value)
        for write in batch.writes:
            write.store.put(write.key, write.value)
        self.outputs.extend(batch.outputs)
        return batch

    # -- inputs ----------------------------------------------------------------------

    def signal(self, *signals: HealthSignal, now: datetime = T0) -> Batch:
        return self.apply(*(InboxMessage.of_signal(s) for s in signals), now=now)

    def command(
        self,
        kind: CommandKind,
        cluster_id: str = "c1",
        instance_id: str = "i1",
        *,
        now: datetime = T0,
        route: Route = Route.INSTANCE,
        **fields: object,
    ) -> Reply:
        command = Command(
            command_id=str(uuid.uuid4()),
            kind=kind,
            cluster_id=cluster_id,
            instance_id=instance_id,
            principal=str(fields.pop("principal", "alice")),
            issued_at=now,
            **fields,  # type: ignore[arg-type]
        )
        self.apply(InboxMessage(command=command, route=route), now=now)
        (reply,) = [r for r in self.replies() if r.command_id == command.command_id]
        return reply

    def report(self, report: StepReport, now: datetime = T0) -> Batch:
        return self.apply(InboxMessage(report=report), now=now)

    def dead_letters(self) -> list[Record]:
        return [r for r in self.outputs if r.topic == TOPICS.dead_letters]

    def kick(self, cluster_id: str = "c1", now: datetime = T0) -> Batch:
        return self.apply(InboxMessage(kick=Kick(cluster_id=cluster_id)), now=now)

    # -- what a consumer sees ----------------------------------------------------------

    def transitions(self) -> list[RemediationTransition]:
        return [
            RemediationTransition.model_validate_json(r.value or b"")
            for r in self.outputs
            if r.topic == TOPICS.transitions
        ]

    def events(self) -> list[PolicyEvent]:
        return [
            PolicyEvent.model_validate_json(r.value or b"")
            for r in self.outputs
            if r.topic == TOPICS.policy_events
        ]

    def replies(self) -> list[Reply]:
        return [
            Reply.model_validate_json(r.value or b"")
            for r in self.outputs
            if r.topic == TOPICS.replies
        ]

    def state(self, cluster_id: str = "c1", instance_id: str = "i1") -> InstanceState | None:
        model = self.fleet.find(0, cluster_id)
        return None if model is None else model.get(instance_id)

    def stored(self, cluster_id: str = "c1", instance_id: str = "i1") -> InstanceState | None:
        """The instance's hot record as written to its table."""
        raw = self.tables.state.get(ids.instance_key(cluster_id, instance_id).encode())
        return None if raw is None else InstanceState.model_validate_json(raw)

    def archived(self, cluster_id: str = "c1", instance_id: str = "i1") -> list[dict[str, object]]:
        raw = self.tables.archive.get(ids.instance_key(cluster_id, instance_id).encode())
        return [orjson.loads(line) for line in (raw or b"").split(b"\n") if line]


def _key(message: InboxMessage) -> bytes:
    signal = message.signal
    if signal is not None:
        return ids.instance_key(signal.cluster_id, signal.instance_id).encode()
    if message.command is not None:
        if message.route is Route.CLAIM:
            return f"claim:{message.command.remediation_id}".encode()
        return ids.instance_key(message.command.cluster_id, message.command.instance_id).encode()
    if message.unreadable is not None:
        letter = message.unreadable.letter
        return dead_letter_key(letter.source_topic, letter.partition).encode()
    return message.cluster_id.encode()


__all__ = ["CommandKind", "Harness", "MemoryStore"]
