"""Faust's aiokafka transport, patched: fetch wait, true end offsets, safe commits.

Faust's aiokafka transport with a configurable fetch wait, true end offsets, and the
consumer's offsets kept safe (``offsets.py``).

Two things Faust's transport takes for granted that the embedded broker (Tansu) does not
give, fixed here so that they hold on any broker:

- **Fetch wait.** Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no
  setting to change it. Against Kafka that is harmless (a fetch returns as soon as data
  arrives), but Tansu answers a fetch only when the wait is over, so every hop (input ->
  inbox -> agent, and every API request) took 0.75 s on average. A short wait costs a
  few empty fetches a second when idle.
- **End offsets.** Asked for a partition's latest offset, Tansu answers the first offset
  of the partition's last record batch + 1, not the end: after one batch of 100 records
  it says 1. Faust reads a table's changelog up to that offset when it recovers the
  table, so it would stop short of the last batch's other records (state written just
  before a restart, forgotten), and its lag figures would be short too. The consumer here
  checks what it is told: it fetches the last batch and takes the offset after its last
  record. On Kafka that fetch finds the very record before the end and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as driver

from .offsets import SafeOffsets, skipped_ranges
from .security import Connection

log = logging.getLogger(__name__)

#: How long to wait for the last batch of a partition when checking its end offset.
_PROBE_SECONDS = 2.0


class EndOffsets:
    """True end offsets: what the broker says, checked against its last record batch."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._consumer: AIOKafkaConsumer | None = None

    async def check(self, ends: Mapping[Any, int]) -> dict[Any, int]:
        result = dict(ends)
        probed = {TopicPartition(tp.topic, tp.partition): tp for tp, end in ends.items() if end}
        if not probed:
            return result
        consumer = await self._ensure()
        consumer.assign(list(probed))
        for tp in probed:
            consumer.seek(tp, ends[probed[tp]] - 1)
        pending = set(probed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _PROBE_SECONDS
        while pending and loop.time() < deadline:
            fetched = await consumer.getmany(*pending, timeout_ms=200)
            for tp, records in fetched.items():
                if records:
                    original = probed[tp]
                    result[original] = max(result[original], records[-1].offset + 1)
                    pending.discard(tp)  # a whole batch comes at once: that is its end
        return result

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = self._connection.consumer(
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=50,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def _positions(consumer: Any, tps: Iterable[Any] | None) -> dict[Any, int]:
    """The fetch positions of ``tps`` that are known (aiokafka's subscription state)."""
    assignment = getattr(consumer._subscription.subscription, "assignment", None)
    if assignment is None or tps is None:
        return {}
    positions = {}
    for tp in tps:
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position:
            positions[tp] = state.position
    return positions


def transport_class(fetch_max_wait_ms: int, connection: Connection) -> type[driver.Transport]:
    """A Faust Kafka transport whose consumer waits at most ``fetch_max_wait_ms`` and
    reports true end offsets (the classes below, bound to this worker's settings)."""
    thread = type(
        "FetchConsumerThread",
        (FetchConsumerThread,),
        {"fetch_max_wait_ms": fetch_max_wait_ms, "connection": connection},
    )
    consumer = type("FetchConsumer", (FetchConsumer,), {"thread_class": thread})
    return type("Transport", (driver.Transport,), {"Consumer": consumer})


class FetchConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread: the fetch wait, read_committed, true end offsets, and the
    offsets each fetch moved past without a record."""

    #: Set by :func:`transport_class`.
    fetch_max_wait_ms: int
    connection: Connection
    _ends: EndOffsets | None = None
    #: (tp, first, last): offsets a fetch moved past without a record, for the
    #: consumer's commit rule (offsets.py). Appended here, read in the app's thread.
    skipped: deque[tuple[Any, int, int]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.skipped = deque()

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        before = _positions(consumer, active_partitions)
        records = await super()._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=max_records
        )
        after = _positions(consumer, before)
        for tp, start in before.items():
            end = after.get(tp, start)
            if end > start:
                delivered = (record.offset for record in records.get(tp, ()))
                for first, last in skipped_ranges(start, end, delivered):
                    self.skipped.append((tp, first, last))
        return records

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts and creates its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        # Committed records only: monitoring that writes its signals in transactions
        # may abort one, and Faust reads uncommitted (it reads committed only in its
        # own exactly-once mode). An aborted signal must not open a remediation.
        consumer._isolation_level = "read_committed"
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        ends = await super()._highwaters(partitions)
        if self._ends is None:
            self._ends = EndOffsets(self.connection)
        return await self._ends.check(ends)

    async def on_thread_stop(self) -> None:
        if self._ends is not None:
            await self._ends.close()
        await super().on_thread_stop()


class FetchConsumer(SafeOffsets, driver.Consumer):
    """Faust's consumer with the commit rule of offsets.py and a cheaper delivery."""

    #: Set by :func:`transport_class`.
    thread_class: type[FetchConsumerThread]

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        """Deliver a fetched message without racing it against a suspension.

        Faust's drain loop hands every message over as ``wait_first(deliver(message),
        suspend_flow.wait())``: four tasks created, raced and cancelled per message,
        about a quarter of the worker's CPU under load (profiled with py-spy). While
        the flow is not suspended the race is only there to let go of a delivery
        that blocks when a rebalance starts; such a delivery blocks at most until the
        flow resumes (recovery resumes it before it fetches the changelogs), and the
        message it delivers then belongs to the old generation, which the stream
        skips, as Faust does with any message fetched before a rebalance. So the
        delivery is awaited directly; once the flow is suspended, Faust's race again.
        """
        if (
            len(coros) == 2
            and timeout is None
            and getattr(coros[1], "__qualname__", "") == "Event.wait"
            and not self.suspend_flow.is_set()
        ):
            coros[1].close()
            await coros[0]
            return None
        return await super().wait_first(*coros, timeout=timeout)
