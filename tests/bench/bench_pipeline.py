"""Throughput of the signal pipeline against a raw aiokafka baseline, in the same run.

    make bench            # or: python -m tests.bench.bench_pipeline --signals 20000

Both sides get the same input on the same Tansu broker, produced after the consumer is
ready, and are timed from the first produced message to the last output seen:

- baseline: a bare aiokafka consume -> produce loop (one output per input), the ceiling
  of any Kafka consumer in Python on this machine;
- remediator: a real ``remediator worker`` process. Each instance gets ``--per-instance``
  signals, all passing but the last, which fails and opens a remediation; since an
  instance's signals stay in order through the inbox, the last transition seen means
  every signal was processed. So the figure covers ingest, the re-keying hop, dedup state,
  and a publish waited for per remediation.

The result is a ratio, not a threshold: it is printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from remediator.embedded import EmbeddedBroker, free_port
from tests.builders import run_payload
from tests.integration.conftest import permissive_policy_text

PARTITIONS = 4


async def create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_until(bootstrap: str, topic: str, expected: int, timeout: float) -> float:
    """Wait until ``expected`` messages are on ``topic``; return the time of the last."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, last = 0, time.perf_counter()
        deadline = time.perf_counter() + timeout
        while seen < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{seen} of {expected} outputs on {topic} in {timeout}s")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen += len(records)
                if records:
                    last = time.perf_counter()
        return last
    finally:
        await consumer.stop()


async def passthrough(bootstrap: str, source: str, sink: str, expected: int) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{source}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < expected:
            batch = await consumer.getmany(timeout_ms=200)
            futures = [
                await producer.send(sink, record.value, key=record.key)
                for records in batch.values()
                for record in records
            ]
            await asyncio.gather(*futures)
            done += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()


async def measure_baseline(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> float:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"raw-in-{tag}", f"raw-out-{tag}"
    await create_topics(bootstrap, source, sink)
    loop_task = asyncio.create_task(passthrough(bootstrap, source, sink, len(messages)))
    await asyncio.sleep(3.0)  # consumer group joined
    start = time.perf_counter()
    await produce_all(bootstrap, source, messages)
    last = await count_until(bootstrap, sink, len(messages), timeout=600)
    await loop_task
    return len(messages) / (last - start)


async def measure_worker(
    broker: EmbeddedBroker, messages: list[tuple[bytes, bytes]], remediations: int, work: Path
) -> float:
    tag = uuid.uuid4().hex[:8]
    active, transitions = f"active-{tag}", f"transitions-{tag}"
    web_port = free_port()
    # Thousands of failing instances in one cluster: a storm the default policy would stop.
    policy = work / "permissive-policy.toml"
    policy.write_text(permissive_policy_text())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")},
        "REMEDIATOR_BROKER": broker.url,
        "REMEDIATOR_APP_ID": f"bench-{tag}",
        "REMEDIATOR_TOPIC_ACTIVE_RUNS": active,
        "REMEDIATOR_TOPIC_PASSIVE_EVENTS": f"passive-{tag}",
        "REMEDIATOR_TOPIC_TRANSITIONS": transitions,
        "REMEDIATOR_TOPIC_DEAD_LETTER": f"dlq-{tag}",
        "REMEDIATOR_WEB_PORT": str(web_port),
        "REMEDIATOR_PARTITIONS": str(PARTITIONS),
        "REMEDIATOR_DATA_DIR": str(work / "data"),
        "REMEDIATOR_BROKER_SESSION_TIMEOUT": "3",
        "REMEDIATOR_LOG_LEVEL": "warning",
        "REMEDIATOR_POLICY_FILE": str(policy),
    }
    with (work / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "remediator.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await wait_ready(web_port, worker)
            start = time.perf_counter()
            await produce_all(broker.address, active, messages)
            last = await count_until(broker.address, transitions, remediations, timeout=900)
            return len(messages) / (last - start)
        finally:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(20)
            if worker.poll() is None:
                worker.kill()


async def wait_ready(port: int, worker: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if worker.poll() is not None:
                raise RuntimeError("worker exited before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
                if health.get("ready"):
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("worker not ready in 60 s")


def workload(signals: int, per_instance: int) -> tuple[list[tuple[bytes, bytes]], int]:
    instances = max(signals // per_instance, 1)
    messages = []
    # Instances interleaved, as real monitoring would send them; each one's own signals in
    # order, the failing one last.
    for k in range(per_instance):
        result = "FAILED" if k == per_instance - 1 else "PASSED"
        for n in range(instances):
            instance = f"bench-{n}"
            payload = run_payload(
                cluster_id="bench",
                instance_id=instance,
                result=result,
                completed_at=f"2026-11-24T12:{k % 60:02d}:00Z",
            )
            messages.append((instance.encode(), orjson.dumps(payload)))
    return messages, instances


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signals", type=int, default=20000)
    parser.add_argument("--per-instance", type=int, default=10)
    args = parser.parse_args()
    messages, remediations = workload(args.signals, args.per_instance)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(port=0) as broker:
        baseline = await measure_baseline(broker.address, messages)
        subject = await measure_worker(broker, messages, remediations, Path(tmp))
    print(f"signals: {len(messages)}, remediations opened: {remediations}")
    print(f"baseline (raw aiokafka consume->produce): {baseline:10.0f} msg/s")
    print(f"remediator worker (ingest->inbox->decide): {subject:10.0f} msg/s")
    print(f"ratio remediator/baseline: {subject / baseline:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
