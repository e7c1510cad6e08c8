"""Kafka plumbing of the fault suite: a producer that remembers where each record landed,
a group-less reader of whole topics, and "lag drained".

End offsets of the input topics come from the producer's own acks, not from ListOffsets:
Tansu answers ListOffsets with the base offset of a partition's last batch + 1 (see
tests/bench/kafka.py), which is not the end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from remediator.kafka.metadata import partitions_of

#: Large enough for the 10 MB bad input; the broker may still refuse it.
MAX_REQUEST = 16 * 1024 * 1024


@dataclass
class Producer:
    bootstrap: str
    #: Offset after the last record produced, per partition.
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    produced: int = 0
    _producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            max_request_size=MAX_REQUEST,
            request_timeout_ms=60_000,
            acks="all",
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, topic: str, value: bytes, key: bytes | None) -> tuple[str, int, int]:
        """Produce one record and wait for its ack; return (topic, partition, offset)."""
        assert self._producer is not None
        meta = await self._producer.send_and_wait(topic, value, key=key)
        tp = TopicPartition(topic, meta.partition)
        self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
        self.produced += 1
        return topic, meta.partition, meta.offset

    async def send_many(self, records: list[tuple[str, bytes, bytes | None]]) -> None:
        """Produce in order per key, acks awaited together (faster than one by one)."""
        assert self._producer is not None
        futures = [await self._producer.send(t, v, key=k) for t, v, k in records]
        for (topic, _, _), future in zip(records, futures, strict=False):
            meta = await future
            tp = TopicPartition(topic, meta.partition)
            self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
            self.produced += 1


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def read_all(
    bootstrap: str, topic: str, settle: float = 2.0, timeout: float = 60
) -> list[Record]:
    """Every record on ``topic`` from the start, once nothing new came for ``settle`` s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=MAX_REQUEST,
        fetch_max_bytes=MAX_REQUEST,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        partitions = await partitions_of(consumer, topic)
        while not partitions:
            if loop.time() > deadline:
                return []
            await asyncio.sleep(0.2)
            partitions = await partitions_of(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Record] = []
        last = loop.time()
        while loop.time() - last < settle and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    records.append(Record(m.partition, m.offset, m.key, m.value))
                    last = loop.time()
        return records
    finally:
        await consumer.stop()


async def committed(
    bootstrap: str, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Explicit partitions: Tansu drops the connection on "all partitions" (null).
        answer: dict[Any, Any] = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp: (answer[tp].offset if tp in answer and answer[tp].offset >= 0 else 0) for tp in tps}


async def wait_drained(
    bootstrap: str, group: str, ends: dict[TopicPartition, int], timeout: float
) -> int:
    """Wait until ``group`` committed up to ``ends``; return the lag left (0: drained)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    lag = sum(ends.values())
    while True:
        try:
            offsets = await committed(bootstrap, group, list(ends))
            lag = sum(max(end - offsets[tp], 0) for tp, end in ends.items())
        except KafkaError:
            pass  # a coordinator moving during a rebalance: ask again
        if lag == 0 or loop.time() > deadline:
            return lag
        await asyncio.sleep(0.5)
