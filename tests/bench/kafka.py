"""Kafka plumbing of the bench: topics, a fast producer, "lag drained", a paced producer.

"Lag drained" is the end of every throughput run: the consumer group has committed, on
every topic it reads, offsets equal to the end offsets. It is read with the admin
client's ``list_consumer_group_offsets`` and a group-less consumer's ``end_offsets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from remediator.pipeline.outbox import key_partition

from .workload import ACTIVE, Message

#: Records per producer round (grouped per partition into aiokafka batches).
CHUNK = 4000
POLL_SECONDS = 0.1
#: Input lag (records) above which the end of a run is polled ten times less often.
FAR = 5000


@dataclass(frozen=True)
class InputTopics:
    active: str
    passive: str
    partitions: int

    def of(self, message: Message) -> str:
        return self.active if message.kind == ACTIVE else self.passive


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Best effort: frees the memory broker between scenarios."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


Ends = dict[TopicPartition, int]


@dataclass
class Produced:
    """What a producer sent: how many, in how long."""

    count: int = 0
    seconds: float = 0.0


async def send_chunk(
    kafka: AIOKafkaProducer, topics: InputTopics, chunk: Sequence[Message], ends: Ends
) -> list[asyncio.Future[Any]]:
    """Send ``chunk`` as one aiokafka batch per partition (the producer's fast path);
    keys hash to the partitions Kafka's default partitioner picks. Returns the acks;
    each one, when it comes, moves ``ends`` (the exact end offsets of what was sent)."""
    groups: dict[TopicPartition, list[Message]] = {}
    for message in chunk:
        tp = TopicPartition(topics.of(message), key_partition(message.key, topics.partitions))
        groups.setdefault(tp, []).append(message)
    acks = []
    for tp, members in groups.items():
        batch, count = kafka.create_batch(), 0
        for message in members:
            if batch.append(key=message.key, value=message.value, timestamp=None) is None:
                acks.append(await _send(kafka, batch, tp, count, ends))
                batch, count = kafka.create_batch(), 0
                batch.append(key=message.key, value=message.value, timestamp=None)
            count += 1
        acks.append(await _send(kafka, batch, tp, count, ends))
    return acks


async def _send(
    kafka: AIOKafkaProducer, batch: Any, tp: TopicPartition, count: int, ends: Ends
) -> asyncio.Future[Any]:
    ack: asyncio.Future[Any] = await kafka.send_batch(batch, tp.topic, partition=tp.partition)

    def moved(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            ends[tp] = max(ends.get(tp, 0), done.result().offset + count)  # base offset + n

    ack.add_done_callback(moved)
    return ack


async def produce(
    bootstrap: str,
    topics: InputTopics,
    messages: Iterable[Message],
    produced: Produced,
    ends: Ends,
) -> None:
    """Send everything as fast as the broker takes it (two chunks in flight)."""
    start = time.perf_counter()
    async with producer(bootstrap) as kafka:
        in_flight: list[asyncio.Future[Any]] = []
        chunk: list[Message] = []
        for message in messages:
            chunk.append(message)
            if len(chunk) >= CHUNK:
                await asyncio.gather(*in_flight)
                in_flight = await send_chunk(kafka, topics, chunk, ends)
                produced.count += len(chunk)
                chunk = []
        if chunk:
            in_flight += await send_chunk(kafka, topics, chunk, ends)
            produced.count += len(chunk)
        await asyncio.gather(*in_flight)
    produced.seconds = time.perf_counter() - start


class LagProbe:
    """Tells whether a consumer group has committed everything on the topics it reads.

    The end offsets of topics the bench produced to are known exactly (``ends``, from
    the acks). Others (the worker's inbox) need care: Tansu's ListOffsets answers the
    base offset of a partition's last record batch + 1, not its high watermark (after
    one batch of 100 records it says 1). So the last batch is fetched to find the real
    end once the committed offsets have reached the listed ones.
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        produced: Sequence[str],
        others: Sequence[str],
        partitions: int,
        ends: Ends,
    ):
        self.group = group
        self.ends = ends
        #: Records of the produced topics not yet committed, at the last look.
        self.input_lag = 0
        self.produced = [TopicPartition(t, p) for t in produced for p in range(partitions)]
        self.others = [TopicPartition(t, p) for t in others for p in range(partitions)]
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )

    async def __aenter__(self) -> LagProbe:
        await self._admin.start()
        await self._consumer.start()
        if self.others:
            self._consumer.assign(self.others)
            # Fetched only to find a last batch: a paused partition costs the broker
            # and the bench nothing between looks.
            self._consumer.pause(*self.others)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def committed(self) -> Ends:
        tps = self.produced + self.others
        # Explicit partitions: Tansu drops the connection on "all partitions" (null).
        answer = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        offsets = {}
        for tp in tps:
            meta = answer.get(tp)
            offsets[tp] = meta.offset if meta is not None and meta.offset >= 0 else 0
        return offsets

    async def drained_at(self) -> float | None:
        """The moment the group was seen with no lag (``perf_counter``), or None."""
        committed = await self.committed()
        moment = time.perf_counter()
        self.input_lag = sum(max(self.ends.get(tp, 0) - committed[tp], 0) for tp in self.produced)
        if self.input_lag:
            return None
        if not self.others:
            return moment
        listed = await self._consumer.end_offsets(self.others)
        if any(committed[tp] < listed.get(tp, 0) for tp in self.others):
            return None
        # Every batch that existed at ``moment`` ends at or before the last batch now.
        real = await self.last_batch_ends({tp: n for tp, n in listed.items() if n > 0})
        return None if any(committed[tp] < end for tp, end in real.items()) else moment

    async def true_ends(self) -> Ends:
        """The real end offsets of the ``others`` partitions (0 for an empty one)."""
        listed = await self._consumer.end_offsets(self.others)
        real = await self.last_batch_ends({tp: n for tp, n in listed.items() if n > 0})
        return {tp: real.get(tp, 0) for tp in self.others}

    async def last_batch_ends(self, listed: Ends) -> Ends:
        """The offset after the last record of the batch at ``listed - 1``, per partition."""
        for tp, offset in listed.items():
            self._consumer.seek(tp, offset - 1)
        self._consumer.resume(*listed)
        ends: Ends = {}
        deadline = time.perf_counter() + 30
        try:
            while len(ends) < len(listed):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no last batch of {sorted(set(listed) - set(ends))}")
                batch = await self._consumer.getmany(*listed, timeout_ms=500)
                for tp, records in batch.items():
                    if records:
                        ends[tp] = max(ends.get(tp, 0), records[-1].offset + 1)
        finally:
            self._consumer.pause(*listed)
        return ends


async def wait_drained(
    probe: LagProbe,
    production: asyncio.Task[None] | None,
    *,
    check: Callable[[], None],
    timeout: float,
) -> float:
    """Poll until production is over and the group has no lag; return that moment
    (``perf_counter``). ``check`` raises when a subject died."""
    deadline = time.perf_counter() + timeout
    while True:
        check()
        if production is not None and production.done():
            production.result()  # raises what the producer raised
        if production is None or production.done():
            moment = await probe.drained_at()
            if moment is not None:
                return moment
        if time.perf_counter() > deadline:
            raise TimeoutError(f"group {probe.group}: not drained after {timeout:.0f}s")
        # Far from done, look less often: the bench shares the machine with its subject.
        await asyncio.sleep(POLL_SECONDS if probe.input_lag < FAR else 10 * POLL_SECONDS)


async def paced(
    bootstrap: str,
    topics: InputTopics,
    messages: Iterable[Message],
    rate: float,
    on_sent: Callable[[Sequence[Message], float], None],
    ends: Ends,
    check: Callable[[], None],
    tick: float = 0.01,
) -> Produced:
    """Send ``messages`` at ``rate`` per second, a tick's worth at a time; ``on_sent`` is
    told each tick's messages and the moment just before they were handed to the
    producer. ``check`` raises when a subject died."""
    iterator = iter(messages)
    produced = Produced()
    async with producer(bootstrap) as kafka:
        # The pace starts once the producer is connected and knows the topics: timed
        # from before (as it was), the first tick sent the start-up's worth in one burst,
        # and the first probes' latency counted the producer's own metadata round trips
        # (the ten slowest of 400 probes were all in the first 1.5 s).
        for topic in (topics.active, topics.passive):
            await kafka.partitions_for(topic)
        start = time.perf_counter()
        pending: list[Awaitable[Any]] = []
        exhausted = False
        while not exhausted:
            check()
            due = int((time.perf_counter() - start) * rate) - produced.count
            chunk = []
            for _ in range(max(due, 0)):
                message = next(iterator, None)
                if message is None:
                    exhausted = True
                    break
                chunk.append(message)
            if chunk:
                on_sent(chunk, time.perf_counter())
                pending += await send_chunk(kafka, topics, chunk, ends)
                produced.count += len(chunk)
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
    produced.seconds = time.perf_counter() - start
    return produced


async def records_per_topic(
    bootstrap: str, topics: Sequence[str], partitions: int
) -> dict[str, int]:
    """How many records each topic holds (none are deleted during a run)."""
    async with LagProbe(bootstrap, "-", [], topics, partitions, {}) as probe:
        ends = await probe.true_ends()
    counts = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        counts[tp.topic] += end
    return counts
