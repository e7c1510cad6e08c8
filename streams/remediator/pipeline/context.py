"""What a handler works with while a batch of inputs is applied, and what it leaves behind.

Handlers (``pipeline/handlers.py``) decide with the pure core and record the outcome
here, never doing I/O themselves: :class:`Context` hands them the decoded clusters, the
logs kept outside the hot records, and collects a :class:`Batch` of effects that the
processor then makes durable in the right order:

1. outputs (transitions, policy events, replies, forwarded messages) and the archive
   and decision logs, sent together, every ack awaited;
2. then the hot state, in exactly the order it changed, so that what a crash leaves in
   the changelog is always the state after some prefix of the inputs (a replay then
   decides the rest exactly as the first time: same ids, same content);
3. then, and only then, the inputs are acknowledged (their offsets may be committed).

The hot state is one table, ``state``, holding both kinds of record decisions read: one
per instance (key ``cluster/instance``) and one per cluster (key ``cluster``: its pause
and whether its blast radius is tripped). They share one changelog on purpose: a
cluster's record must never be recovered ahead of, or behind, the instances it governs
(a pause written but not the signals decided before it would decide those again
differently), and only one ordered log gives that without transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import TypeAdapter

from remediator.domain import expiry, freeze, ids, queueing, safety, slots, topology, verification
from remediator.domain.bounds import MAX_ARCHIVE_BYTES, MAX_DECISIONS_BYTES
from remediator.domain.correlate import CorrelationConfig
from remediator.domain.execution import start
from remediator.domain.models import (
    DecisionRecord,
    PolicyEvent,
    Remediation,
    RemediationTransition,
    RemediationTrigger,
    dump_json,
)
from remediator.domain.replies import Reply
from remediator.domain.safety import ClusterRecord
from remediator.domain.state import InstanceState
from remediator.metrics import Tally

from .fleet import ClusterModel, Fleet
from .messages import InboxMessage
from .outbox import Record
from .store import TableStore

#: Closed remediations kept per instance in the archive (older ones are only on
#: ``remediation-transitions``), and decisions kept per instance for ``explain``; each
#: log is one table value, so it is bounded in bytes too (domain/bounds.py).
MAX_ARCHIVED = 50
MAX_DECISIONS = 50

_remediations: TypeAdapter[Remediation] = TypeAdapter(Remediation)
_decisions: TypeAdapter[DecisionRecord] = TypeAdapter(DecisionRecord)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input came from (for logs and dead letters)."""

    topic: str
    partition: int
    offset: int
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One input for the state owner."""

    partition: int  # the cluster's partition
    key: bytes
    message: InboxMessage
    #: The input's own time (record timestamp, command or report time): what stamps the
    #: changes it makes, so a replay stamps them the same.
    now: datetime
    origin: Origin


@dataclass(frozen=True, slots=True)
class Tables:
    #: The hot records: instances (``cluster/instance``) and clusters (``cluster``).
    state: TableStore
    archive: TableStore
    decisions: TableStore
    claims: TableStore


@dataclass(frozen=True, slots=True)
class Topics:
    transitions: str
    policy_events: str
    replies: str
    inbox: str
    dead_letters: str


@dataclass(frozen=True, slots=True)
class Write:
    store: TableStore
    key: bytes
    value: bytes | None


@dataclass
class Batch:
    outputs: list[Record] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    #: New values of the append-only logs (archive, decisions), by (table, key).
    logs: dict[tuple[str, bytes], tuple[TableStore, bytes]] = field(default_factory=dict)
    #: Hot records written, for the executor once they are durable.
    written: dict[bytes, InstanceState] = field(default_factory=dict)
    #: Lifecycle events applied (for failpoints named after them).
    events: set[str] = field(default_factory=set)
    #: What the batch applied, for the metrics once it is durable.
    tally: Tally = field(default_factory=Tally)
    #: Values written by this batch (see Context.read), by (table, key).
    pending: dict[tuple[str, bytes], bytes | None] = field(default_factory=dict)


class Context:
    """The handlers' view of the owned fleet during one batch."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        tables: Tables,
        topics: Topics,
        config: CorrelationConfig,
        max_running_per_cluster: int,
        partitions: int,
    ) -> None:
        self.fleet = fleet
        self.tables = tables
        self.topics = topics
        self.config = config
        self.policy = config.policy
        self.max_running = max_running_per_cluster
        self.partitions = partitions
        self.batch = Batch()

    # -- reading -------------------------------------------------------------------

    def cluster(self, partition: int, cluster_id: str) -> ClusterModel:
        return self.fleet.cluster(partition, cluster_id)

    def read(self, store: TableStore, key: bytes) -> bytes | None:
        """A table's value as this batch has left it: an earlier input of the same batch
        may have written it (two creates with one id in one batch must see each other)."""
        pending = self.batch.pending
        if (store.name, key) in pending:
            return pending[(store.name, key)]
        return store.get(key)

    def write(self, store: TableStore, key: bytes, value: bytes | None) -> None:
        """Write a table value with the batch (durable, in order, before the inputs are
        acknowledged: see the module docstring)."""
        self.batch.writes.append(Write(store, key, value))
        self.batch.pending[(store.name, key)] = value

    def _log(self, store: TableStore, key: bytes) -> bytes | None:
        pending = self.batch.logs.get((store.name, key))
        return pending[1] if pending is not None else store.get(key)

    def archived(self, cluster_id: str, instance_id: str) -> list[Remediation]:
        """The instance's closed remediations, newest first."""
        raw = self._log(self.tables.archive, ids.instance_key(cluster_id, instance_id).encode())
        return [_remediations.validate_json(line) for line in _lines(raw)]

    def decisions(self, cluster_id: str, instance_id: str) -> list[DecisionRecord]:
        """The instance's recent decisions, newest first."""
        raw = self._log(self.tables.decisions, ids.instance_key(cluster_id, instance_id).encode())
        return [_decisions.validate_json(line) for line in _lines(raw)]

    # -- recording -----------------------------------------------------------------

    def put(
        self,
        model: ClusterModel,
        state: InstanceState,
        transitions: Sequence[RemediationTransition] = (),
        events: Sequence[PolicyEvent] = (),
        decision: DecisionRecord | None = None,
    ) -> None:
        """An instance changed: its new hot record, what to publish, what to log."""
        model.put(state)
        key = state.key.encode()
        batch = self.batch
        batch.writes.append(Write(self.tables.state, key, dump_json(state)))
        batch.written[key] = state
        for transition in transitions:
            batch.outputs.append(Record(self.topics.transitions, key, dump_json(transition)))
            batch.tally.transition(transition)
            if transition.event is not None:
                batch.events.add(transition.event)
            if transition.to_state.is_terminal:
                self._append(
                    self.tables.archive,
                    key,
                    dump_json(transition.remediation),
                    MAX_ARCHIVED,
                    MAX_ARCHIVE_BYTES,
                )
        self.publish_events(events)
        if decision is not None:
            self._append(
                self.tables.decisions, key, dump_json(decision), MAX_DECISIONS, MAX_DECISIONS_BYTES
            )

    def put_cluster(self, model: ClusterModel, record: ClusterRecord) -> None:
        """A cluster's own record changed (in the same log as its instances: see above)."""
        model.record = record
        key = record.cluster_id.encode()
        self.batch.writes.append(Write(self.tables.state, key, dump_json(record)))

    def publish_events(self, events: Sequence[PolicyEvent]) -> None:
        for event in events:
            # Keyed as alerting sees them: by instance, or by the cluster for cluster events.
            key = (
                ids.instance_key(event.cluster_id, event.instance_id)
                if event.instance_id is not None and event.kind.value not in _CLUSTER_EVENTS
                else event.cluster_id
            )
            self.batch.outputs.append(
                Record(self.topics.policy_events, key.encode(), dump_json(event))
            )

    def reply(self, reply: Reply) -> None:
        self.batch.outputs.append(
            Record(self.topics.replies, reply.command_id.encode(), dump_json(reply))
        )

    def forward(self, partition: int, key: bytes, message: InboxMessage, now: datetime) -> None:
        """Send a message on to the inbox partition of the cluster it is about."""
        self.batch.outputs.append(
            Record(self.topics.inbox, key, dump_json(message), partition, _millis(now))
        )

    def dead_letter(self, key: bytes | None, value: bytes) -> None:
        self.batch.outputs.append(Record(self.topics.dead_letters, key, value))

    def _append(
        self, store: TableStore, key: bytes, line: bytes, limit: int, max_bytes: int
    ) -> None:
        old = self._log(store, key)
        if old is not None and (old == line or old.startswith(line + b"\n")):
            return  # the same entry again (an input replayed after a crash)
        self.batch.logs[(store.name, key)] = (store, append_line(old, line, limit, max_bytes))

    # -- the cluster after a change --------------------------------------------------

    def settle(self, model: ClusterModel, now: datetime) -> None:
        """Apply what a cluster's new counts and clock call for: resume a tripped blast
        radius (the cluster's or a failure domain's), open waiting proposals while there
        is room, expire stale recommendations, fail verifications past their deadline
        (on the cluster's event time), start queued remediations while slots are free.
        Level-triggered, so doing it again (after a replay, a takeover) changes nothing
        that is already done. Called after every change: each step is O(1) unless it has
        something to do (the model caches when the next deadline falls)."""
        self._notice_freezes(model, now)
        record = model.record
        if (
            record.tripped_at is not None
            or record.budget_exhausted_at is not None
            or record.tripped_domains
        ):
            record, events = safety.reconcile(model.view(), self.policy, now)
            if record != model.record:
                self.put_cluster(model, record)
                self.publish_events(events)
        if model.waiting and not safety.no_room(
            model.record,
            len(model.instances),
            len(model.unhealthy),
            model.admissions,
            model.latest or now,
            self.policy,
        ):
            self._admit_waiting(model, now)
        if model.latest is not None:
            self._expire_due(model, model.latest)
            self._fail_verifications_due(model, model.latest)
        self._start_queued(model, now)

    def _notice_freezes(self, model: ClusterModel, now: datetime) -> None:
        """Note the change freezes holding at the cluster's clock: FREEZE_STARTED and
        FREEZE_ENDED once per window, as the clock crosses its edges."""
        calendar = self.policy.freezes
        if model.latest is None or not (calendar or model.record.freezes):
            return
        holding = calendar.holding(model.cluster_id, model.latest)
        if {h.freeze.name: h.start for h in holding} == model.record.freezes:
            return
        noted, events = freeze.reconcile(model.cluster_id, model.record.freezes, holding, now)
        self.put_cluster(model, model.record.model_copy(update={"freezes": noted}))
        self.publish_events(events)

    def _expire_due(self, model: ClusterModel, clock: datetime) -> None:
        """Cancel the recommendations that waited for approval past their TTL."""

        def deadline(instance: str) -> datetime | None:
            state = model.get(instance)
            return None if state is None else expiry.deadline(state, self.policy)

        due = model.expiry_due(deadline)
        if due is None or clock < due:
            return
        for instance in sorted(model.awaiting):
            state = model.get(instance)
            expired = None if state is None else expiry.expire(state, self.policy, clock)
            if expired is not None:
                self.put(model, expired.state, (expired.transition,), (expired.event,))

    def _fail_verifications_due(self, model: ClusterModel, clock: datetime) -> None:
        """Fail the verifications whose instance showed no health by their deadline."""
        due = model.verify_due()
        if due is None or clock < due:
            return
        for instance in sorted(model.verifying):
            state = model.get(instance)
            failed = None if state is None else verification.due(state, clock)
            if failed is not None:
                self.put(model, failed.state, (), (failed.event,))

    def _start_queued(self, model: ClusterModel, now: datetime) -> None:
        """Start PENDING remediations, first approved first, while the cluster has slots."""
        free = slots.due(len(model.running), len(model.queued), self.max_running)
        calendar, clock = self.policy.freezes, model.latest or now
        for instance in model.next_queued():
            state = model.get(instance)
            if free <= 0:
                return
            if state is None or _frozen(state, calendar, clock):
                continue
            started, transition = start(state, now)
            self.put(model, started, (transition,))
            free -= 1

    def _admit_waiting(self, model: ClusterModel, now: datetime) -> None:
        """Open waiting proposals, first in line first, while the cluster has room."""
        clock = model.latest or now
        for instance in model.next_waiting():
            state = model.get(instance)
            if state is None:  # pragma: no cover - waiting implies a record
                continue
            if state.open is not None or state.opt_out is not None:
                self.put(model, queueing.drop(state))  # handled otherwise meanwhile
                continue
            view = model.view(instance)
            admitted = queueing.try_admit(state, view, self.policy, clock, now)
            if isinstance(admitted, queueing.NoRoom):
                if admitted.domain_only:
                    continue  # its rack is full; others may have room
                return  # no room in the cluster: none for those behind it either
            self.put(model, admitted.state, admitted.transitions, (admitted.event,))


_CLUSTER_EVENTS = frozenset(
    {"BLAST_RADIUS_TRIPPED", "BLAST_RADIUS_RESUMED", "CLUSTER_PAUSED", "CLUSTER_RESUMED"}
)


def _frozen(state: InstanceState, calendar: freeze.Calendar, clock: datetime) -> bool:
    """Whether a freeze holds the instance's approved automated remediation back (one
    created by hand was an operator's decision: it starts)."""
    return (
        bool(calendar)
        and state.open is not None
        and state.open.remediation.trigger is RemediationTrigger.AUTOMATED
        and calendar.first(state.cluster_id, clock, topology.names(state.domain), starting=True)
        is not None
    )


def append_line(old: bytes | None, line: bytes, limit: int, max_bytes: int | None = None) -> bytes:
    """``line`` first, then the newest lines of ``old`` (JSON Lines, newest first): at
    most ``limit`` lines in all, and no more than ``max_bytes`` bytes unless ``line``
    alone is (a table value must fit in a Kafka record). An append costs a copy, not a
    parse of the history."""
    if not old:
        return line
    room = len(old) if max_bytes is None else max_bytes - len(line) - 1
    end = -1
    for _ in range(max(limit, 1) - 1):
        newline = old.find(b"\n", end + 1)
        stop = len(old) if newline < 0 else newline
        if stop > room:
            break  # that line would not fit: it and the older ones go
        end = stop
        if newline < 0:
            break
    return line + b"\n" + old[:end] if end > 0 else line


def _lines(raw: bytes | None) -> list[bytes]:
    return [line for line in raw.split(b"\n") if line] if raw else []


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)
