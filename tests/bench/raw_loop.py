"""The raw baseline: a bare aiokafka consume -> produce loop, run as its own process.

    python tests/bench/raw_loop.py BOOTSTRAP SOURCE SINK GROUP COMMIT_INTERVAL

One output per input; the acks of a fetched batch are awaited together (as a careful
consumer must before committing), and the processed offsets are committed every
COMMIT_INTERVAL seconds, like the worker under the bench. No parsing, no state: the
ceiling of any Kafka consumer in Python on this machine. Runs until terminated.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata


async def run(bootstrap: str, source: str, sink: str, group: str, interval: float) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        rebalance_timeout_ms=3000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():  # joined: the bench starts producing now
        await consumer.getmany(timeout_ms=100)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    done: dict[TopicPartition, int] = {}
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            acks = [
                await producer.send(sink, record.value, key=record.key)
                for records in batch.values()
                for record in records
            ]
            await asyncio.gather(*acks)
            for tp, records in batch.items():
                if records:
                    done[tp] = records[-1].offset + 1
            if done and (not batch or time.monotonic() - last_commit >= interval):
                await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
                done, last_commit = {}, time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    bootstrap, source, sink, group, interval = sys.argv[1:6]
    asyncio.run(run(bootstrap, source, sink, group, float(interval)))
