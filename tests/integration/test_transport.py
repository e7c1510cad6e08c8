"""The transport's end offsets on the real broker: the offset after the last record, even
where the broker itself answers the start of the last record batch + 1 (Tansu)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from remediator.kafka.security import Connection
from remediator.kafka.transport import EndOffsets
from tests.integration.conftest import Broker, Kafka

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")


async def test_the_end_offset_is_after_the_last_record_of_the_last_batch(
    broker: Broker, kafka: Kafka
) -> None:
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    await kafka.create_topics(topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.address)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.address)
    await consumer.start()
    ends = EndOffsets(Connection((broker.address,)))
    try:
        batch = producer.create_batch()
        for n in range(100):
            batch.append(timestamp=None, key=b"k", value=str(n).encode())
        await (await producer.send_batch(batch, topic, partition=0))
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        told = await consumer.end_offsets(tps)
        checked = await ends.check(told)
        assert checked == {tps[0]: 100, tps[1]: 0}
        await producer.send_and_wait(topic, b"one more", partition=0)
        assert (await ends.check(await consumer.end_offsets(tps)))[tps[0]] == 101
    finally:
        await ends.close()
        await consumer.stop()
        await producer.stop()
