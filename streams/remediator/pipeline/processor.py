"""The state owner: applies batches of inputs to the clusters this worker owns.

Two agents feed it: the ingest agent hands over the health signals of clusters whose
partition this worker owns (no hop through Kafka), and the inbox agent everything else
(signals forwarded by other workers, API commands, the executor's reports). One lock
serializes them, so every cluster has exactly one writer applying its inputs in order
(invariant 4).

For a batch: each input is applied in order against the decoded in-memory fleet by its
handler (``pipeline/handlers.py``); then the batch is made durable in the order the
module docstring of ``pipeline/context.py`` explains (outputs and logs acknowledged,
then the hot state in the order it changed); only then may
the caller acknowledge its inputs. A kill -9 anywhere replays the batch: everything it
published is published again with the same ids and content, nothing is applied twice.

The fleet image is rebuilt from the tables whenever the partitions move (a rebalance):
it is only ever a cache of what the changelogs say, ahead by the batch in flight.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from remediator import failpoints
from remediator.domain.correlate import CorrelationConfig
from remediator.domain.execution import running_remediation
from remediator.domain.models import dump_json
from remediator.domain.safety import ClusterRecord
from remediator.domain.state import InstanceState
from remediator.metrics import DEAD_LETTERED, Metrics

from .context import Batch, Context, Item, Tables, Topics, Write
from .decode import dead_letter
from .fleet import ClusterModel, Fleet
from .handlers import handler_for
from .messages import InboxMessage, Kick
from .outbox import DEFAULT_MAX_OUTPUT_BYTES, Delivered, Record, Sender

log = logging.getLogger(__name__)

#: Failpoints hit once a batch with such a lifecycle event is durable (crash tests).
_EVENT_FAILPOINTS = {
    "START": "instances.after_start",
    "STEP_STARTED": "instances.after_step_started",
    "STEP_DONE": "instances.after_step_done",
    "FAIL": "instances.after_step_failed",
    "SUCCEED": "instances.after_step_done",
}


class Processor:
    def __init__(
        self,
        *,
        app: Any,
        tables: Tables,
        topics: Topics,
        config: CorrelationConfig,
        max_running_per_cluster: int,
        partitions: int,
        executor: Any,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.app = app
        self.tables = tables
        self.topics = topics
        self.config = config
        self.max_running = max_running_per_cluster
        self.partitions = partitions
        self.executor = executor
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.max_output_bytes = max_output_bytes
        self.fleet = Fleet()
        self._lock = asyncio.Lock()
        self._generation: int | None = None
        self._owned: frozenset[int] = frozenset()
        self._sender: Sender | None = None
        self._reloads: set[asyncio.Future[None]] = set()

    # -- ownership -------------------------------------------------------------------

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = Sender(
                self.app.producer._producer,
                max_bytes=self.max_output_bytes,
                dead_letters=self.topics.dead_letters,
                dropped=self.metrics.output_record_dropped,
                clock=self.clock,
            )
        return self._sender

    def owns(self, partition: int) -> bool:
        """Whether inputs of ``partition`` may be applied here right now."""
        return (
            partition in self._owned
            and not self.app.rebalancing
            and self._generation == self.app.consumer_generation_id
        )

    def owned_clusters(self) -> Iterator[ClusterModel]:
        """The clusters whose inputs are applied here now (none while partitions move)."""
        for partition in sorted(self._owned):
            if self.owns(partition):
                yield from list(self.fleet.partitions.get(partition, {}).values())

    def _assigned(self) -> frozenset[int]:
        return frozenset(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topics.inbox
        )

    def on_rebalance_start(self) -> None:
        # Nothing is applied here until the image is rebuilt for the new assignment.
        self._owned = frozenset()
        self._generation = None

    def on_rebalance_end(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Rebuild the fleet image for the partitions owned now (if not done already)."""
        if self._generation == self.app.consumer_generation_id:
            return
        async with self._lock:
            await self._ensure_loaded()

    async def _ensure_loaded(self) -> None:
        generation = self.app.consumer_generation_id
        if self._generation == generation:
            return
        owned = self._assigned()
        started = asyncio.get_running_loop().time()
        fleet = Fleet()
        running: list[tuple[bytes, InstanceState]] = []
        count = 0
        store = self.tables.state
        for key, raw in store.items(owned):
            if b"/" not in key:  # a cluster's own record
                record = ClusterRecord.model_validate_json(raw)
                fleet.cluster(store.partition_of(key), record.cluster_id).record = record
                continue
            state = InstanceState.model_validate_json(raw)
            fleet.cluster(store.partition_of(key), state.cluster_id).put(state)
            count += 1
            if running_remediation(state) is not None:
                running.append((key, state))
        self.fleet, self._owned, self._generation = fleet, owned, generation
        # The loaded fleet lives as long as the assignment: keep the collector from
        # walking it on every full collection (see app.tune_gc). What an earlier load
        # froze is released first, so that the image it dropped can be collected.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info(
            "state loaded: %d instance(s) in %d cluster(s) of partition(s) %s in %.2fs",
            count,
            sum(1 for _ in fleet.clusters()),
            sorted(owned),
            asyncio.get_running_loop().time() - started,
        )
        self.executor.resume(running)
        await self._kick_waiting_queues()

    async def _kick_waiting_queues(self) -> None:
        """A cluster taken over may have room for queued remediations (the limit may have
        been raised, or the previous owner died between a release and a start): ask its
        partition to look again. A message, not a change made here, so that the starts
        carry its timestamp and a replay makes them the same."""
        kicks = [
            Record(
                self.topics.inbox,
                model.cluster_id.encode(),
                dump_json(InboxMessage(kick=Kick(cluster_id=model.cluster_id))),
                partition,
            )
            for partition, clusters in self.fleet.partitions.items()
            for model in clusters.values()
            if (model.queued and len(model.running) < self.max_running) or model.waiting
        ]
        if kicks:
            log.info("%d cluster queue(s) to revisit", len(kicks))
            await self.sender.deliver(kicks)

    # -- applying --------------------------------------------------------------------

    async def apply(self, items: Sequence[Item]) -> list[Item]:
        """Apply ``items`` in order and make their effects durable; see the module
        docstring. Returns, once durable, the items it did *not* apply (inbox records of
        a partition not owned here now): the caller must not acknowledge those."""
        if not items:
            return []
        skipped: list[Item] = []
        async with self._lock:
            await self._ensure_loaded()
            ctx = Context(
                fleet=self.fleet,
                tables=self.tables,
                topics=self.topics,
                config=self.config,
                max_running_per_cluster=self.max_running,
                partitions=self.partitions,
            )
            for item in items:
                if not self._apply_one(ctx, item):
                    skipped.append(item)
            await self._persist(ctx.batch)
        return skipped

    def _apply_one(self, ctx: Context, item: Item) -> bool:
        """Apply one item; False for an inbox record left unapplied (see :meth:`apply`)."""
        if item.partition not in self._owned:
            if item.origin.topic != self.topics.inbox:
                # A signal handed over by ingest for a partition no longer ours: its owner
                # gets it through the inbox (our input offset will be committed).
                ctx.forward(item.partition, item.key, item.message, item.now)
                return True
            # An inbox record of a partition not ours *now*: a rebalance started (the
            # consumer's thread cleared _owned, maybe in the middle of this batch). It
            # must not be acknowledged: Faust commits acknowledged offsets when the
            # partition is revoked, and the record would be lost to its next owner (the
            # fault suite's kill-9 scenario lost signals so). Unacknowledged, it is read
            # again by whoever owns the partition after the rebalance.
            return False
        try:
            handler_for(item.message)(ctx, item)
        except Exception as exc:
            # A bug, or a message no handler can take: never wedge the partition on it.
            # What the handler recorded before failing stays consistent with the model.
            log.exception(
                "could not apply %s[%d]@%d; dead-lettered",
                item.origin.topic,
                item.origin.partition,
                item.origin.offset,
            )
            letter = dead_letter(
                source_topic=item.origin.topic,
                partition=item.origin.partition,
                offset=item.origin.offset,
                key=item.key,
                payload=item.origin.raw or dump_json(item.message),
                error=f"{type(exc).__name__}: {exc}",
                received_at=self.clock(),
            )
            ctx.dead_letter(item.key, dump_json(letter))
            if item.message.signal is not None:
                ctx.batch.tally.signal(item.message.signal, DEAD_LETTERED)
        return True

    async def _persist(self, batch: Batch) -> None:
        logs = [Write(store, key, value) for (_, key), (store, value) in batch.logs.items()]
        await self._deliver(logs, outputs=batch.outputs)
        if any(r.topic == self.topics.transitions for r in batch.outputs):
            await failpoints.hit("instances.after_publish")
        await self._write(batch.writes)  # every write acknowledged when this returns
        if batch.writes:
            await failpoints.hit("instances.after_state_write")
            for event in sorted(batch.events):
                point = _EVENT_FAILPOINTS.get(event)
                if point is not None:
                    await failpoints.hit(point)
        for key, state in batch.written.items():
            self.executor.observe(key, state)
        self.metrics.record(batch.tally)

    async def _write(self, writes: Sequence[Write]) -> None:
        """The hot state, in the order it changed (see pipeline/context.py)."""
        if failpoints.armed("batch.partial_write") and len(writes) > 1:
            await self._deliver(writes[: len(writes) // 2])
            await failpoints.hit("batch.partial_write")
        await self._deliver(writes)

    async def _deliver(self, writes: Sequence[Write], outputs: Sequence[Record] = ()) -> None:
        """Send ``outputs`` and the changelog records of ``writes``, every ack awaited;
        only then write the local stores (never ahead of their changelogs: see
        pipeline/store.py), in order, and note the offsets the changelogs are at."""
        records = [*outputs, *(write.store.record(write.key, write.value) for write in writes)]
        delivered = await self.sender.deliver(records)
        for write in writes:
            write.store.apply(write.key, write.value)
        self._persisted(delivered)

    def _persisted(self, delivered: Sequence[Delivered]) -> None:
        """Tell the stores which changelog offsets are in the broker (RocksDB keeps them)."""
        tables = self.tables
        stores = {
            store.changelog: store
            for store in (tables.state, tables.claims, tables.archive, tables.decisions)
        }
        last: dict[tuple[str, int], int] = {}
        for where in delivered:
            last[(where.topic, where.partition)] = max(
                where.offset, last.get((where.topic, where.partition), -1)
            )
        for (topic, partition), offset in last.items():
            store = stores.get(topic)
            if store is not None:
                store.persisted(partition, offset)
