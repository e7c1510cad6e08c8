"""The ingest agent: input topics -> validated health signals, applied or forwarded.

Reads ``active-health-check-runs`` and ``passive-health-check-events`` as raw bytes,
whatever their key, in batches. A message that fails validation goes to the dead-letter
topic with a one-line reason and the agent moves on; it goes there through the owner of
its input partition's dead-letter marks (``handlers.on_unreadable``), which sends each
bad record once however often it is read. A valid signal belongs to its
cluster's partition (everything about a cluster has one writer): when this worker owns
that partition, the signal is handed straight to the state owner (no hop through Kafka);
otherwise it is forwarded to the inbox partition of its cluster, whose owner applies it.

A batch's input offsets are acknowledged only once every signal in it was applied and
made durable, or forwarded and acknowledged by the broker: at-least-once, and the state
owner drops the repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

import faust
from faust.streams import Stream
from faust.types import EventT, StreamT

from remediator import failpoints
from remediator.domain import ids
from remediator.domain.models import ActiveHealthCheckRun, PassiveHealthCheckEvent, dump_json

from .context import Item, Origin
from .decode import InvalidInput, check_size, dead_letter, decode_signal
from .messages import InboxMessage, Unreadable, cluster_partition, dead_letter_key
from .outbox import Record, key_partition
from .processor import Processor


def record_time(event: EventT[bytes], clock: Callable[[], datetime]) -> datetime:
    """The input record's own timestamp: it stamps what the input causes, so a replay
    stamps the same (the clock only when the record has none)."""
    timestamp = event.message.timestamp
    if timestamp is None or timestamp <= 0:
        return clock()
    return datetime.fromtimestamp(timestamp, UTC)


def register_ingest(
    app: faust.App,
    *,
    active_runs: faust.TopicT,
    passive_events: faust.TopicT,
    inbox: str,
    processor: Processor,
    partitions: int,
    batch_max: int,
    batch_wait: float,
    max_input_bytes: int,
    clock: Callable[[], datetime],
) -> faust.types.AgentT[bytes]:
    models: dict[str, type[ActiveHealthCheckRun] | type[PassiveHealthCheckEvent]] = {
        active_runs.get_topic_name(): ActiveHealthCheckRun,
        passive_events.get_topic_name(): PassiveHealthCheckEvent,
    }
    sources = app.topic(
        *models, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    def read(event: EventT[bytes]) -> tuple[int, bytes, InboxMessage]:
        """Where an input goes: its cluster's partition, or (unusable) the partition of
        its input partition's dead-letter marks; with the key and message to apply."""
        message = event.message
        raw = message.value
        try:
            check_size(raw, max_input_bytes)
            signal = decode_signal(models[message.topic], raw)
        except InvalidInput as exc:
            letter = dead_letter(
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                payload=raw,
                error=str(exc),
                received_at=clock(),
            )
            key = dead_letter_key(message.topic, message.partition).encode()
            unreadable = InboxMessage(unreadable=Unreadable.of(letter, message.key))
            return key_partition(key, partitions), key, unreadable
        key = ids.instance_key(signal.cluster_id, signal.instance_id).encode()
        return cluster_partition(signal.cluster_id, partitions), key, InboxMessage.of_signal(signal)

    async def ingest(stream: StreamT[bytes]) -> None:
        # take_events is on faust's Stream, not on its StreamT protocol.
        async for events in cast("Stream[bytes]", stream).take_events(batch_max, batch_wait):
            await processor.reload()  # after a rebalance: know what is owned before sorting
            local: list[Item] = []
            remote: list[Record] = []
            for event in events:
                partition, key, forwarded = read(event)
                now = record_time(event, clock)
                if processor.owns(partition):  # applied here, without a hop through Kafka
                    message = event.message
                    origin = Origin(message.topic, message.partition, message.offset, message.value)
                    local.append(Item(partition, key, forwarded, now, origin))
                else:
                    timestamp_ms = int(now.timestamp() * 1000)
                    remote.append(Record(inbox, key, dump_json(forwarded), partition, timestamp_ms))
            if failpoints.armed("ingest.raise"):
                raise RuntimeError("failpoint ingest.raise: a bug in the ingest agent")
            await asyncio.gather(processor.sender.deliver(remote), processor.apply(local))

    return app.agent(sources, name="ingest")(ingest)
