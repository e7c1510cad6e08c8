"""Bounded outputs on a real worker (issue 18): an instance fed many large alerts keeps
producing transitions, nothing the worker writes (output topics, internal topics,
changelogs) comes near Kafka's 1 MB limit, and its partition never stalls.

Before the fix, on Apache Kafka, the remediation grew by ~64 KiB per linked alert until
its transition passed ``message.max.bytes``; the broker refused it, the sender retried it
for ever, and every later input of the partition waited behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from remediator.domain.bounds import MAX_REMEDIATION_BYTES
from remediator.kafka.metadata import partitions_of
from tests.builders import event_payload, run_payload
from tests.integration.conftest import (
    OPERATOR_TOKENS,
    PARTITIONS,
    Kafka,
    Names,
    WorkerProcess,
)

pytestmark = pytest.mark.brokers("tansu", "kafka")

#: REMEDIATOR_MAX_OUTPUT_BYTES's default, just under Kafka's default message.max.bytes.
LIMIT = 1_000_000
ALERTS = 40
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def large_alert(n: int) -> dict[str, Any]:
    """A valid CRITICAL alert of about 170 KB (inputs may be up to 256 KiB): long names,
    40 annotations of 2000 two-byte characters."""
    return event_payload(
        cluster_id="big",
        instance_id="hot",
        instance_name="gpu-" + "n" * 2000,
        alert_name=f"DmesgXidError-{n}-" + "x" * 2000,
        observed_at=(START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        annotations={f"{k:02d}-{'k' * 200}": f"{n}" + "é" * 2000 for k in range(40)},
    )


async def serving(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names, **env: str
) -> WorkerProcess:
    """A worker that owns every inbox partition. The inbox is created first, as the
    worker creates the input and output topics before Faust starts: Faust creates it at
    start otherwise, and on Apache Kafka the group may form before the new topic is in
    the metadata; the worker then owns none of its partitions until the next metadata
    refresh (minutes), with /healthz saying ready (a separate, known problem)."""
    await kafka.create_topics(f"{names.app_id}-cluster-inbox")
    worker = start_worker(**env)
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=5) as client:
        for _ in range(100):
            health = (await client.get("/healthz")).json()
            if health.get("partitions") == list(range(PARTITIONS)):
                return worker
            await asyncio.sleep(0.2)
    raise AssertionError(f"the worker does not own every inbox partition: {health}")


async def test_large_alerts_keep_flowing_and_every_record_fits(
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    names: Names,
    api: Callable[[WorkerProcess], httpx.AsyncClient],
) -> None:
    worker = await serving(start_worker, kafka, names, REMEDIATOR_API_TOKENS=OPERATOR_TOKENS)
    for n in range(ALERTS):
        alert = large_alert(n)
        assert 150_000 < len(orjson.dumps(alert)) < 256 * 1024
        await kafka.produce(names.passive, alert, key=b"hot")
    # Later signals of other instances of the same cluster (so of the same partition).
    for other in ("o1", "o2", "o3"):
        run = run_payload(cluster_id="big", instance_id=other, completed_at="2026-11-24T13:00:00Z")
        await kafka.produce(names.active, run, key=other.encode())

    transitions = await kafka.read(names.transitions, at_least=ALERTS + 3, timeout=90)

    hot = [t for t in transitions if t["_key"] == "big/hot"]
    assert [t["sequence"] for t in hot] == list(range(1, ALERTS + 1))
    opened = {t["_key"] for t in transitions if t["from_state"] is None}
    assert opened == {"big/hot", "big/o1", "big/o2", "big/o3"}  # the partition went on
    last = hot[-1]["remediation"]
    assert len(orjson.dumps(last)) <= MAX_REMEDIATION_BYTES
    assert last["linked_alerts_dropped"] > 0
    assert len(last["linked_alerts"]) + last["linked_alerts_dropped"] == ALERTS
    assert len(last["instance_name"]) == 256
    assert last["instance_name"].endswith("bytes)")

    # A list reply and an archive value: the API answers, closing moves it to the archive.
    client = api(worker)
    listed = await client.get("/v1/compute/clusters/big/instances/-/remediations?page_size=500")
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["remediations"]) == 4
    cancelled = await client.post(
        f"/v1/compute/clusters/big/instances/hot/remediations/{last['id']}/cancel"
    )
    assert cancelled.status_code == 200, cancelled.text

    sizes = await record_sizes(kafka.bootstrap, names)
    assert f"{names.app_id}-state-changelog" in sizes
    assert f"{names.app_id}-archive-changelog" in sizes
    too_large = {topic: max(s) for topic, s in sizes.items() if max(s) > LIMIT}
    assert not too_large, too_large
    # Far below, not just below: the last resort was not needed.
    assert max(max(s) for s in sizes.values()) < LIMIT // 2
    assert "dropped a record" not in worker.log()


async def record_sizes(bootstrap: str, names: Names, settle: float = 3.0) -> dict[str, list[int]]:
    """Key plus value bytes of every record on the test's output topics and the
    worker's internal topics and changelogs, by topic (read until nothing new comes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = (names.transitions, names.dead_letter, names.policy_events)
        topics = [
            t for t in await admin.list_topics() if t in mine or t.startswith(names.app_id + "-")
        ]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in await partitions_of(consumer, topic)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        sizes: dict[str, list[int]] = {}
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while loop.time() - quiet_since < settle:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    size = len(record.key or b"") + len(record.value or b"")
                    sizes.setdefault(tp.topic, []).append(size)
                    quiet_since = loop.time()
        return sizes
    finally:
        await consumer.stop()


async def test_an_output_over_the_limit_is_dropped_and_reported_and_the_partition_goes_on(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    """The last resort, with the limit set low enough that the large alerts' records pass
    it: each is dropped alone (a CRITICAL line, a count, a dead letter) and the partition
    carries on, where before it retried for ever."""
    worker = await serving(start_worker, kafka, names, REMEDIATOR_MAX_OUTPUT_BYTES=str(64 * 1024))
    for n in range(3):
        await kafka.produce(names.passive, large_alert(n), key=b"hot")
    for other in ("o1", "o2", "o3"):
        run = run_payload(cluster_id="big", instance_id=other, completed_at="2026-11-24T13:00:00Z")
        await kafka.produce(names.active, run, key=other.encode())

    transitions = await kafka.read(names.transitions, at_least=3, timeout=90)

    opened = {t["_key"] for t in transitions if t["from_state"] is None}
    assert {"big/o1", "big/o2", "big/o3"} <= opened
    letters = await kafka.read(names.dead_letter, at_least=1, timeout=30)
    dropped = [letter for letter in letters if letter["source_topic"] == names.transitions]
    assert dropped
    assert all(letter["key"] == "big/hot" and letter["offset"] == -1 for letter in dropped)
    assert all(letter["payload_size"] > 64 * 1024 for letter in dropped)
    assert all(len(orjson.dumps(letter)) < 8 * 1024 for letter in letters)
    assert "dropped a record of" in worker.log()
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    labels = f'reason="over_limit",topic="{names.transitions}"'
    assert f"remediator_output_records_dropped_total{{{labels}}}" in metrics
