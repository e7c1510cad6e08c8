"""How a batch is made durable: outputs first, then state in the order it changed, a
cluster's record in the same log as its instances; and how records are grouped into
batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from remediator.domain.models import RemediationState
from remediator.pipeline.context import Batch, Tables, Write, append_line
from remediator.pipeline.outbox import Delivered, Record, Sender, key_partition
from remediator.pipeline.processor import Processor
from tests.builders import run
from tests.harness import TOPICS, Harness, MemoryStore


class RecordingSender:
    """Stands in for the batched sender: remembers each delivery, in order."""

    def __init__(self) -> None:
        self.deliveries: list[list[Record]] = []

    async def deliver(self, records: Sequence[Record]) -> list[Delivered]:
        if records:
            self.deliveries.append(list(records))
        return [Delivered(r.topic, r.partition or 0, n) for n, r in enumerate(records)]


def processor(sender: RecordingSender) -> tuple[Processor, Tables]:
    tables = Tables(
        state=MemoryStore("state"),  # type: ignore[arg-type]
        archive=MemoryStore("archive"),  # type: ignore[arg-type]
        decisions=MemoryStore("decisions"),  # type: ignore[arg-type]
        claims=MemoryStore("claims"),  # type: ignore[arg-type]
    )

    class Executor:
        def observe(self, key: bytes, state: Any) -> None:
            pass

    owner = Processor(
        app=None,
        tables=tables,
        topics=TOPICS,
        config=Harness().config,
        max_running_per_cluster=1,
        partitions=1,
        executor=Executor(),
        clock=lambda: None,  # type: ignore[arg-type, return-value]
    )
    owner._sender = sender  # type: ignore[assignment]
    return owner, tables


def test_outputs_and_logs_go_first_then_state_in_the_order_it_changed() -> None:
    sender = RecordingSender()
    owner, tables = processor(sender)
    batch = Batch(
        outputs=[Record("transitions", b"c1/a", b"t1")],
        writes=[
            Write(tables.state, b"c1/a", b"a1"),
            Write(tables.state, b"c1/b", b"b1"),
            Write(tables.state, b"c1", b"tripped"),
            Write(tables.state, b"c1/c", b"c1"),
            Write(tables.state, b"c1/a", b"a2"),
        ],
    )
    batch.logs[("archive", b"c1/a")] = (tables.archive, b"closed")
    asyncio.run(owner._persist(batch))
    assert [[(r.topic, r.value) for r in d] for d in sender.deliveries] == [
        [("transitions", b"t1"), ("archive-changelog", b"closed")],
        # One log, one round trip; not coalesced: the same key twice keeps both, so that
        # a crash leaves a prefix of the changes.
        [
            ("state-changelog", b"a1"),
            ("state-changelog", b"b1"),
            ("state-changelog", b"tripped"),
            ("state-changelog", b"c1"),
            ("state-changelog", b"a2"),
        ],
    ]
    assert tables.state.get(b"c1/a") == b"a2"


def test_a_batch_written_through_the_harness_leaves_every_cluster_record_before_the_next() -> None:
    harness = Harness()
    harness.signal(run(instance_id="a"), run(instance_id="b", result="PASSED"))
    state = harness.stored("c1", "a")
    assert state is not None
    assert state.open is not None
    assert state.open.remediation.state is RemediationState.PENDING_APPROVAL


def test_append_line_keeps_the_newest_lines_only() -> None:
    log = None
    for n in range(5):
        log = append_line(log, f"line {n}".encode(), limit=3)
    assert log == b"line 4\nline 3\nline 2"
    assert append_line(None, b"x", 1) == b"x"
    assert append_line(b"a\nb", b"x", 1) == b"x"


class FakeProducer:
    """aiokafka's batch interface, recording what was sent where."""

    def __init__(self, capacity: int = 3) -> None:
        self.capacity = capacity
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> Any:
        producer = self

        class Batch:
            def __init__(self) -> None:
                self.records: list[tuple[bytes | None, bytes | None]] = []

            def append(self, *, timestamp: Any, key: Any, value: Any) -> object | None:
                if len(self.records) >= producer.capacity:
                    return None
                self.records.append((key, value))
                return object()

        return Batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.records))
        base = sum(len(r) for t, p, r in self.sent[:-1] if (t, p) == (topic, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        class Meta:
            offset = base

        Meta.partition = partition  # type: ignore[attr-defined]
        future.set_result(Meta)
        return future


def test_records_are_grouped_per_partition_in_order_and_split_when_a_batch_is_full() -> None:
    producer = FakeProducer(capacity=2)

    async def send() -> list[Delivered]:
        records = [
            Record("inbox", b"k1", b"v1", partition=1),
            Record("inbox", b"k2", b"v2", partition=0),
            Record("inbox", b"k3", b"v3", partition=1),
            Record("inbox", b"k4", b"v4", partition=1),
            Record("transitions", b"c1/i1", b"t"),
        ]
        return await Sender(producer).send(records)

    delivered = asyncio.run(send())
    by_partition = [(t, p, [k for k, _ in r]) for t, p, r in producer.sent]
    assert ("inbox", 1, [b"k1", b"k3"]) in by_partition
    assert ("inbox", 1, [b"k4"]) in by_partition
    assert ("inbox", 0, [b"k2"]) in by_partition
    assert ("transitions", key_partition(b"c1/i1", 4), [b"c1/i1"]) in by_partition
    # Offsets follow each record, in the order given.
    assert [(d.partition, d.offset) for d in delivered[:4]] == [(1, 0), (0, 0), (1, 1), (1, 2)]


class FailingSender:
    """A delivery that never reaches the broker (the worker is killed while it waits)."""

    def __init__(self) -> None:
        self.attempts: list[list[Record]] = []

    async def deliver(self, records: Sequence[Record]) -> list[Delivered]:
        self.attempts.append(list(records))
        raise asyncio.CancelledError  # kill -9: nothing after this point happens


def test_local_stores_are_written_only_once_their_changelogs_have_the_records() -> None:
    """A value written to a RocksDB store ahead of its changelog outlives a kill -9; the
    replay then finds the same entry already there and does not write it again, so the
    changelog, what any other worker recovers from, would never have it."""
    sender = FailingSender()
    owner, tables = processor(sender)  # type: ignore[arg-type]
    batch = Batch(
        outputs=[Record("transitions", b"c1/a", b"t1")],
        writes=[Write(tables.state, b"c1/a", b"a1")],
    )
    batch.logs[("decisions", b"c1/a")] = (tables.decisions, b"decided")
    batch.logs[("archive", b"c1/a")] = (tables.archive, b"closed")
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(owner._persist(batch))
    assert [r.value for r in sender.attempts[0]] == [b"t1", b"decided", b"closed"]
    assert tables.decisions.get(b"c1/a") is None
    assert tables.archive.get(b"c1/a") is None
    assert tables.state.get(b"c1/a") is None
