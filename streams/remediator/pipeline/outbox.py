"""Sending many records at once and knowing when the broker has them.

The pipeline's outputs (transitions, policy events, replies, forwarded inputs) and its
changelog writes go out in batches: records are grouped per topic partition into
aiokafka batches (one append each, instead of the producer's per-message path) and every
acknowledgement is awaited together, one round trip for a whole batch of inputs.

Partitions: a record may name its partition (the inbox and the changelogs are partitioned
by cluster); otherwise its key is hashed as Kafka's default partitioner does (murmur2),
so ``remediation-transitions`` keyed ``cluster/instance`` lands where any Kafka client
would put it.

A failed send is retried until it succeeds (a broker outage must lose nothing), except
for a record too large to be sent at all: retried, it would stall its partition for
good (every later input waits behind it). Such a record is dropped, alone, with a
CRITICAL line, a count and a small dead letter describing it (:meth:`Sender.deliver`).
The domain keeps every record far below the limit (``domain/bounds.py``): this is the
last resort.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from aiokafka.partitioner import murmur2

from remediator.domain.models import dump_json

from .decode import dead_letter

log = logging.getLogger(__name__)

_BACKOFF_START = 0.2
_BACKOFF_MAX = 10.0

#: Just under Apache Kafka's default ``message.max.bytes`` (1048588 bytes for a whole
#: batch, its headers included): REMEDIATOR_MAX_OUTPUT_BYTES.
DEFAULT_MAX_OUTPUT_BYTES = 1_000_000
#: What a dead letter about a dropped output keeps of its payload: enough to recognise it.
_KEPT_PREFIX = 1024
#: ``reason`` of a dropped output: over our own limit (never sent), or refused when sent.
OVER_LIMIT, REFUSED = "over_limit", "refused"


class RecordDoesNotFit(ValueError):
    """A record larger than the producer's batches can ever hold."""


#: Errors that say this record can never be sent (retrying cannot help).
_TOO_LARGE = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    RecordDoesNotFit,
)


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


def record_size(record: Record) -> int:
    """The bytes of a record's key and value (what the broker's limit is mostly made of;
    the limit leaves room for the batch's own few dozen)."""
    return len(record.key or b"") + len(record.value or b"")


#: Told of every record dropped: (topic, reason).
Dropped = Callable[[str, str], None]


class Sender:
    """Batched sends through one aiokafka producer (the app's own, started by Faust).

    ``max_bytes``: records larger than this are never sent (see :meth:`deliver`); a
    dead letter about each goes to ``dead_letters`` (None: none is sent)."""

    def __init__(
        self,
        producer: Any,
        *,
        max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        dead_letters: str | None = None,
        dropped: Dropped | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._producer = producer
        self._partitions: dict[str, int] = {}
        self.max_bytes = max_bytes
        self._dead_letters = dead_letters
        self._dropped = dropped
        self._clock = clock

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
                        raise RecordDoesNotFit(
                            f"a record for {topic} does not fit in a producer batch"
                        )
                indices.append(index)
            if indices:
                pending.append(
                    (indices, await self._producer.send_batch(batch, topic, partition=partition))
                )
        # Every ack awaited, failed ones too (an exception left unretrieved is logged).
        results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        acks: list[Any] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            acks.append(result)
        delivered: list[Delivered | None] = [None] * len(records)
        for (indices, _), metadata in zip(pending, acks, strict=True):
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

        Except a record that can never be sent: one over ``max_bytes`` is not sent at
        all, one the producer or the broker refuses as too large is found among the
        others and left out; every other one is delivered, and each dropped one is
        reported (:meth:`_drop`). Its partition goes on instead of stalling for good.
        """
        if not records:
            return []
        dropped: dict[int, tuple[Record, str]] = {}
        for record in records:
            if record_size(record) > self.max_bytes:
                dropped[id(record)] = (record, OVER_LIMIT)
        sendable = [r for r in records if id(r) not in dropped]
        delivered = await self._retried(sendable, dropped)
        for record, reason in dropped.values():
            await self._drop(record, reason)
        return delivered

    async def _retried(
        self, records: list[Record], dropped: dict[int, tuple[Record, str]]
    ) -> list[Delivered]:
        """Send until the broker has every record but those found too large."""
        if not records:
            return []
        delay = _BACKOFF_START
        while True:
            try:
                return await self._send_isolating(records, dropped)
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
                records = [r for r in records if id(r) not in dropped]

    async def _send_isolating(
        self, records: list[Record], dropped: dict[int, tuple[Record, str]]
    ) -> list[Delivered]:
        """:meth:`send`; when a record is refused as too large, send them one at a time
        (in order, so each partition's order holds) to find it, and leave it out."""
        try:
            return await self.send(records)
        except _TOO_LARGE:
            pass  # which record? the batch does not say
        delivered: list[Delivered] = []
        for record in records:
            try:
                delivered.extend(await self.send([record]))
            except _TOO_LARGE:
                dropped[id(record)] = (record, REFUSED)
        return delivered

    async def _drop(self, record: Record, reason: str) -> None:
        """One CRITICAL line (never the payload), a count, and unless the record was a
        dead letter itself, a small dead letter describing it."""
        size = record_size(record)
        key = (record.key or b"")[:200].decode("utf-8", "backslashreplace")
        log.critical(
            "dropped a record of %d bytes for %s (key %r): %s; it was not published",
            size,
            record.topic,
            key,
            _why(reason, self.max_bytes),
        )
        if self._dropped is not None:
            self._dropped(record.topic, reason)
        if self._dead_letters is None or record.topic == self._dead_letters:
            return
        partition = record.partition
        if partition is None:
            partition = key_partition(record.key or b"", await self._partition_count(record.topic))
        letter = dead_letter(
            source_topic=record.topic,
            partition=partition,
            offset=-1,
            key=record.key,
            payload=record.value,
            error=f"output record of {size} bytes not published: {_why(reason, self.max_bytes)}",
            received_at=self._clock(),
            keep=_KEPT_PREFIX,
        )
        await self.deliver([Record(self._dead_letters, record.key, dump_json(letter))])


def _why(reason: str, limit: int) -> str:
    if reason == OVER_LIMIT:
        return f"larger than REMEDIATOR_MAX_OUTPUT_BYTES ({limit})"
    return "refused as too large by the producer or the broker"
