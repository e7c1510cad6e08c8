"""The sender's last resort (issue 18): a record too large to be sent is dropped alone,
reported (one CRITICAL line, a counter, a small dead letter) and never retried for ever;
every other failure is still retried until the broker has everything."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from prometheus_client import generate_latest

from remediator.domain.models import DeadLetter
from remediator.metrics import Metrics
from remediator.pipeline import outbox
from remediator.pipeline.outbox import OVER_LIMIT, REFUSED, Delivered, Record, Sender
from remediator.settings import load_settings

LIMIT = 10_000
DEAD = "dead-letters"


class Broker:
    """aiokafka's batch interface over a broker with a record size limit of its own,
    and a number of sends that fail as a broker outage does."""

    def __init__(
        self, *, max_record: int = 10**9, outages: int = 0, batch_max: int = 10**9
    ) -> None:
        self.max_record = max_record
        self.outages = outages
        self.batch_max = batch_max
        self.log: list[tuple[str, int, bytes | None]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Any:
        broker = self

        class Batch:
            def __init__(self) -> None:
                self.records: list[tuple[bytes | None, bytes | None]] = []

            def append(self, *, timestamp: Any, key: Any, value: Any) -> object | None:
                if len(self.records) >= 3 or len(value or b"") > broker.batch_max:
                    return None
                self.records.append((key, value))
                return object()

        return Batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outages:
            self.outages -= 1
            future.set_exception(KafkaConnectionError("broker away"))
            return future
        if any(len(value or b"") > self.max_record for _, value in batch.records):
            future.set_exception(MessageSizeTooLargeError())
            return future
        base = sum(1 for t, p, _ in self.log if (t, p) == (topic, partition))
        self.log.extend((topic, partition, value) for _, value in batch.records)

        class Meta:
            offset = base

        Meta.partition = partition  # type: ignore[attr-defined]
        future.set_result(Meta)
        return future

    def values(self, topic: str) -> list[bytes | None]:
        return [value for t, _, value in self.log if t == topic]


def sender(broker: Broker, dropped: list[tuple[str, str]] | None = None) -> Sender:
    return Sender(
        broker,
        max_bytes=LIMIT,
        dead_letters=DEAD,
        dropped=(lambda topic, reason: dropped.append((topic, reason)))
        if dropped is not None
        else None,
    )


def settle(delivery: Coroutine[Any, Any, list[Delivered]]) -> list[Delivered]:
    """Run one delivery; one that never ends (retried for ever) fails the test."""

    async def bounded() -> list[Delivered]:
        return await asyncio.wait_for(delivery, 5)

    return asyncio.run(bounded())


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "_BACKOFF_START", 0.0)


def test_a_record_over_the_limit_is_never_sent_and_the_others_are_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, dropped = Broker(), []
    payload = b'{"secret": "' + b"x" * (LIMIT + 1) + b'"}'
    records = [
        Record("transitions", b"c1/a", b"first"),
        Record("transitions", b"c1/a", payload),
        Record("state-changelog", b"c1/a", b"state", partition=1),
    ]
    with caplog.at_level(logging.CRITICAL):
        delivered = settle(sender(broker, dropped).deliver(records))
    assert broker.values("transitions") == [b"first"]
    assert broker.values("state-changelog") == [b"state"]
    assert [(d.topic, d.offset) for d in delivered] == [("transitions", 0), ("state-changelog", 0)]
    assert dropped == [("transitions", OVER_LIMIT)]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "transitions" in line
    assert "c1/a" in line
    assert str(len(payload) + 4) in line
    assert "secret" not in line  # never the payload
    (raw,) = broker.values(DEAD)
    letter = DeadLetter.model_validate_json(raw or b"")
    assert (letter.source_topic, letter.key, letter.offset) == ("transitions", "c1/a", -1)
    assert letter.payload_size == len(payload)
    assert letter.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert letter.payload_truncated
    assert len(letter.payload) == 1024
    assert "REMEDIATOR_MAX_OUTPUT_BYTES" in letter.error
    assert len(raw or b"") < 4096


def test_a_record_the_broker_refuses_is_found_and_dropped_alone() -> None:
    broker, dropped = Broker(max_record=5000), []
    records = [
        Record("transitions", b"c1/a", b"abcd"[n : n + 1] * (100 + n * 3000)) for n in range(4)
    ]
    delivered = settle(sender(broker, dropped).deliver(records))
    # Sizes 100, 3100, 6100, 9100: the last two are refused, the first two delivered in order.
    assert [len(v or b"") for v in broker.values("transitions")] == [100, 3100]
    assert len(delivered) == 2
    assert dropped == [("transitions", REFUSED), ("transitions", REFUSED)]
    assert len(broker.values(DEAD)) == 2


def test_a_record_that_fits_no_batch_is_dropped_too() -> None:
    broker, dropped = Broker(batch_max=2000), []
    settle(sender(broker, dropped).deliver([Record("transitions", b"k", b"v" * 3000)]))
    assert dropped == [("transitions", REFUSED)]
    assert len(broker.values(DEAD)) == 1


def test_a_dead_letter_too_large_is_dropped_without_another() -> None:
    broker, dropped = Broker(), []
    settle(sender(broker, dropped).deliver([Record(DEAD, b"k", b"x" * (LIMIT + 1))]))
    assert dropped == [(DEAD, OVER_LIMIT)]
    assert broker.log == []


def test_a_broker_outage_is_still_retried_until_everything_is_delivered() -> None:
    broker, dropped = Broker(outages=3), []
    records = [Record("transitions", b"c1/a", b"one"), Record("transitions", b"c1/b", b"two")]
    delivered = settle(sender(broker, dropped).deliver(records))
    assert sorted(broker.values("transitions")) == [b"one", b"two"]  # type: ignore[type-var]
    assert len(delivered) == 2
    assert dropped == []


def test_dropped_records_are_counted_by_topic_and_reason() -> None:
    metrics = Metrics()
    metrics.output_record_dropped("transitions", OVER_LIMIT)
    text = generate_latest(metrics.registry).decode()
    assert (
        'remediator_output_records_dropped_total{reason="over_limit",topic="transitions"} 1.0'
        in text
    )


def test_the_limit_is_a_setting_just_under_kafkas_default() -> None:
    assert load_settings({}).max_output_bytes == 1_000_000 < 1_048_588
    assert load_settings({"REMEDIATOR_MAX_OUTPUT_BYTES": "500000"}).max_output_bytes == 500_000
