"""Sending many records at once and knowing when the broker has them.

The pipeline's outputs (transitions, policy events, replies, forwarded inputs) and its
changelog writes go out in batches: records are grouped per topic partition into
aiokafka batches (one append each, instead of the producer's per-message path) and every
acknowledgement is awaited together, one round trip for a whole batch of inputs.

Partitions: a record may name its partition (the inbox and the changelogs are partitioned
by cluster); otherwise its key is hashed as Kafka's default partitioner does (murmur2),
so ``remediation-transitions`` keyed ``cluster/instance`` lands where any Kafka client
would put it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)

_BACKOFF_START = 0.2
_BACKOFF_MAX = 10.0


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    #: Milliseconds since the epoch; None: the producer's clock.
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where one record landed (same order as the records sent)."""

    topic: str
    partition: int
    offset: int


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in (murmur2, as Java's)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


class Sender:
    """Batched sends through one aiokafka producer (the app's own, started by Faust)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._partitions: dict[str, int] = {}

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = len(await self._producer.partitions_for(topic))
            self._partitions[topic] = count
        return count

    async def send(self, records: Sequence[Record]) -> list[Delivered]:
        """Send ``records``, await every ack; raise if any could not be delivered.

        Order within a partition is the order given.
        """
        groups: dict[tuple[str, int], list[tuple[int, Record]]] = {}
        for index, record in enumerate(records):
            partition = record.partition
            if partition is None:
                count = await self._partition_count(record.topic)
                partition = key_partition(record.key or b"", count)
            groups.setdefault((record.topic, partition), []).append((index, record))
        pending: list[tuple[list[int], asyncio.Future[Any]]] = []
        for (topic, partition), members in groups.items():
            batch = self._producer.create_batch()
            indices: list[int] = []
            for index, record in members:
                if (
                    batch.append(timestamp=record.timestamp_ms, key=record.key, value=record.value)
                    is None
                ):
                    pending.append(
                        (
                            indices,
                            await self._producer.send_batch(batch, topic, partition=partition),
                        )
                    )
                    batch, indices = self._producer.create_batch(), []
                    if (
                        batch.append(
                            timestamp=record.timestamp_ms, key=record.key, value=record.value
                        )
                        is None
                    ):
                        raise ValueError(f"a record for {topic} does not fit in a producer batch")
                indices.append(index)
            if indices:
                pending.append(
                    (indices, await self._producer.send_batch(batch, topic, partition=partition))
                )
        delivered: list[Delivered | None] = [None] * len(records)
        for indices, future in pending:
            metadata = await future
            for position, index in enumerate(indices):
                record = records[index]
                delivered[index] = Delivered(
                    record.topic, metadata.partition, metadata.offset + position
                )
        return [d for d in delivered if d is not None]

    async def deliver(self, records: Sequence[Record]) -> list[Delivered]:
        """:meth:`send`, retried with backoff until the broker has everything.

        The caller must not move past its input before its output is safe (a replay
        would otherwise lose it); resending is harmless, every record we write carries
        a stable id or is a whole state value.
        """
        if not records:
            return []
        delay = _BACKOFF_START
        while True:
            try:
                return await self.send(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any producer failure means: try again
                topics = ", ".join(sorted({r.topic for r in records}))
                log.error(
                    "sending %d record(s) to %s failed (%s); retrying in %.1fs",
                    len(records),
                    topics,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
