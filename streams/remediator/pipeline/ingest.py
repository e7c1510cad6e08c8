"""The ingest handler: input topics -> validated health signals, applied or forwarded.

Reads ``active-health-check-runs`` and ``passive-health-check-events`` as raw bytes,
whatever their key, in batches (``kafka/direct.py`` hands over what each fetch returned).
A message that fails validation goes to the dead-letter topic with a one-line reason and
the batch moves on; it goes there through the owner of its input partition's
dead-letter marks (``handlers.on_unreadable``), which sends each bad record once however
often it is read. A valid signal belongs to its cluster's partition (everything about a
cluster has one writer): when this worker owns that partition, the signal is handed
straight to the state owner (no hop through Kafka); otherwise it is forwarded to the
inbox partition of its cluster, whose owner applies it.

A batch's input offsets are acknowledged only once every signal in it was applied and
made durable, or forwarded and acknowledged by the broker: at-least-once, and the state
owner drops the repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from remediator import failpoints
from remediator.domain import ids
from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent, dump_json
from remediator.kafka.direct import DirectDelivery

from .context import Item, Origin
from .decode import InvalidInput, check_size, dead_letter, decode_signal
from .messages import InboxMessage, Unreadable, cluster_partition, dead_letter_key
from .outbox import Record, key_partition
from .processor import Processor


def record_time(message: Any, clock: Callable[[], datetime]) -> datetime:
    """The input record's own timestamp: it stamps what the input causes, so a replay
    stamps the same (the clock only when the record has none)."""
    timestamp = message.timestamp
    if timestamp is None or timestamp <= 0:
        return clock()
    return datetime.fromtimestamp(timestamp, UTC)


@dataclass(frozen=True, slots=True)
class _Router:
    """Where an input goes: its cluster's partition, or (unusable) the partition of its
    input partition's dead-letter marks; with the key and the message to apply."""

    models: Mapping[str, type[ActiveHealthCheckRun] | type[PassiveHealthCheckEvent]]
    partitions: int
    max_input_bytes: int
    clock: Callable[[], datetime]

    def __call__(self, message: Any) -> tuple[int, bytes, InboxMessage]:
        raw = message.value
        try:
            check_size(raw, self.max_input_bytes)
            signal = decode_signal(self.models[message.topic], raw)
        except InvalidInput as exc:
            letter = dead_letter(
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                payload=raw,
                error=str(exc),
                received_at=self.clock(),
            )
            key = dead_letter_key(message.topic, message.partition).encode()
            unreadable = InboxMessage(unreadable=Unreadable.of(letter, message.key))
            return key_partition(key, self.partitions), key, unreadable
        key = ids.instance_key(signal.cluster_id, signal.instance_id).encode()
        partition = cluster_partition(signal.cluster_id, self.partitions)
        return partition, key, InboxMessage.of_signal(signal)


def register_ingest(
    direct: DirectDelivery,
    *,
    sources: Sequence[faust.TopicT],
    inbox: str,
    processor: Processor,
    partitions: int,
    batch_max: int,
    max_input_bytes: int,
    clock: Callable[[], datetime],
) -> None:
    """Route the input topics (``sources``: active runs first, then passive events) to
    the ingest handler."""
    active_runs, passive_events = sources
    read = _Router(
        {
            active_runs.get_topic_name(): ActiveHealthCheckRun,
            passive_events.get_topic_name(): PassiveHealthCheckEvent,
        },
        partitions,
        max_input_bytes,
        clock,
    )

    async def ingest(messages: Sequence[Any]) -> Collection[Any]:
        await processor.reload()  # after a rebalance: know what is owned before sorting
        local: list[Item] = []
        remote: list[Record] = []
        for message in messages:
            partition, key, forwarded = read(message)
            now = record_time(message, clock)
            if processor.owns(partition):  # applied here, without a hop through Kafka
                origin = Origin(message.topic, message.partition, message.offset, message.value)
                local.append(Item(partition, key, forwarded, now, origin))
            else:
                timestamp_ms = int(now.timestamp() * 1000)
                remote.append(Record(inbox, key, dump_json(forwarded), partition, timestamp_ms))
        if failpoints.armed("ingest.raise"):
            raise RuntimeError("failpoint ingest.raise: a bug in the ingest agent")
        await asyncio.gather(processor.sender.deliver(remote), processor.apply(local))
        return ()

    direct.route("ingest", sources, ingest, max_batch=batch_max)
