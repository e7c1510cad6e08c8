"""What Apache Kafka does that the embedded Tansu does not, each found and handled.

Every other broker-sensitive test runs on both brokers (``@pytest.mark.brokers``); these
are about behaviour only Apache Kafka has: true end offsets, the classic consumer group
protocol beside KIP-848's, no topic auto-creation, compacted changelogs, transactions
written upstream. The README's "Apache Kafka" section has a line for each.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from remediator.kafka.embedded import free_port
from remediator.kafka.security import Connection
from remediator.kafka.transport import EndOffsets
from tests.builders import run_payload
from tests.faults.kafka import committed, wait_drained
from tests.integration.conftest import (
    PARTITIONS,
    Broker,
    Kafka,
    Names,
    WorkerProcess,
)

pytestmark = pytest.mark.brokers("kafka")


async def test_list_offsets_answers_the_true_end_and_the_end_check_keeps_it(
    broker: Broker, kafka: Kafka
) -> None:
    """Tansu answers ListOffsets with the start of the last batch + 1 (kafka/transport.py checks
    it); Kafka answers the end itself, and the check must leave that alone."""
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    await kafka.create_topics(topic, partitions=1)
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
        tp = TopicPartition(topic, 0)
        told = await consumer.end_offsets([tp])
        assert told == {tp: 100}
        assert await ends.check(told) == {tp: 100}
    finally:
        await ends.close()
        await consumer.stop()
        await producer.stop()


async def test_the_worker_is_a_member_of_a_classic_protocol_group(
    start_worker: Callable[..., WorkerProcess], broker: Broker, names: Names
) -> None:
    """aiokafka speaks the classic group protocol (JoinGroup/SyncGroup) only; Kafka 4
    serves it beside KIP-848's ``consumer`` protocol by default, and the group shows as a
    classic one with Faust's assignor."""
    start_worker()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        (group,) = await admin.describe_consumer_groups([names.app_id])
    finally:
        await admin.close()
    (described,) = group.groups
    error, group_id, state, protocol_type, protocol, members = described[:6]
    assert (error, group_id, state) == (0, names.app_id, "Stable")
    assert protocol_type == "consumer"
    assert protocol == "faust"
    assert len(members) == 1


async def test_with_auto_creation_off_the_worker_creates_the_topics_it_needs(
    start_worker: Callable[..., WorkerProcess], broker: Broker, names: Names
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        (config,) = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])
        entries = {entry[0]: entry[1] for entry in config.resources[0][4]}
        assert entries["auto.create.topics.enable"] == "false"
        start_worker()
        described = await admin.describe_topics([names.active, names.transitions])
    finally:
        await admin.close()
    assert [len(topic["partitions"]) for topic in described] == [PARTITIONS, PARTITIONS]


def _start_worker(
    broker: Broker, names: Names, tmp_path: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run a worker that is expected to refuse to start; its exit and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "remediator.cli", "worker"],
        env={
            **env,
            **names.env(),
            "REMEDIATOR_BROKER": broker.url,
            "REMEDIATOR_DATA_DIR": str(tmp_path),
            "REMEDIATOR_WEB_PORT": str(free_port()),
            **settings,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_create_topics_a_missing_input_topic_stops_start_up_in_one_line(
    broker: Broker, names: Names, tmp_path: Path
) -> None:
    done = _start_worker(broker, names, tmp_path, REMEDIATOR_CREATE_TOPICS="false")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, lines
    assert names.active in lines[0], lines[0]
    assert "REMEDIATOR_CREATE_TOPICS" in lines[0], lines[0]


def test_a_topic_the_broker_refuses_to_create_stops_start_up_in_one_line(
    broker: Broker, names: Names, tmp_path: Path
) -> None:
    """One broker cannot hold three replicas: Kafka refuses, and the worker says so
    instead of waiting for a topic that will never be there."""
    done = _start_worker(broker, names, tmp_path, REMEDIATOR_REPLICATION_FACTOR="3")
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert line.startswith("remediator: cannot create topic "), line
    assert "InvalidReplicationFactorError" in line, line
    assert "REMEDIATOR_REPLICATION_FACTOR is 3" in line, line


async def test_a_restart_recovers_every_instance_from_compacted_changelogs(
    start_worker: Callable[..., WorkerProcess], broker: Broker, kafka: Kafka, names: Names
) -> None:
    """The state changelog is compacted (only each key's last value kept): its offsets
    have holes. A restart must still read every instance's last record."""
    worker = start_worker()
    instances = [f"inst-{n:02d}" for n in range(40)]
    rounds = iter(range(60))

    async def write_all_again() -> None:  # each instance's record written over
        minute = next(rounds)
        for instance in instances:
            run = run_payload(cluster_id="cl-compact", instance_id=instance, result="PASSED")
            run["completed_at"] = f"2026-11-24T12:{minute:02d}:00Z"
            await kafka.produce(names.active, run, key=instance.encode())

    for _ in range(3):
        await write_all_again()
    await _compact_now(broker, f"{names.app_id}-state-changelog", worker, write_all_again)
    assert worker.stop() == 0

    restarted = start_worker()
    assert "state loaded: 40 instance(s)" in restarted.log(), restarted.log()[-2000:]
    failing = run_payload(cluster_id="cl-compact", instance_id="inst-07")
    await kafka.produce(names.active, failing, key=b"inst-07")
    (opened,) = await kafka.read(names.transitions, at_least=1)
    assert opened["remediation"]["instance_id"] == "inst-07"


async def _compact_now(
    broker: Broker, topic: str, worker: WorkerProcess, nudge: Callable[[], Awaitable[None]]
) -> None:
    """Make Kafka's log cleaner compact ``topic`` and wait until it has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    {  # AlterConfigs replaces the topic's settings: the policy too
                        "cleanup.policy": "compact",
                        "segment.ms": "100",
                        "min.cleanable.dirty.ratio": "0.01",
                        "min.compaction.lag.ms": "0",
                    },
                )
            ]
        )
    finally:
        await admin.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        await nudge()  # a new record rolls the segment: the cleaner takes only closed ones
        await asyncio.sleep(0.5)
        records = await _records(broker.address, topic)
        ends = await _ends(broker.address, topic)
        if records < sum(ends.values()):
            return  # holes in the offsets: compacted
        await asyncio.sleep(1.0)
    raise AssertionError(f"{topic} was not compacted in 60 s:\n{worker.log()[-1000:]}")


async def _records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        count = 0
        while batch := await consumer.getmany(timeout_ms=1000):
            count += sum(len(records) for records in batch.values())
        return count
    finally:
        await consumer.stop()


async def _ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


async def test_signals_written_in_transactions_count_once_committed_and_commits_reach_the_end(
    start_worker: Callable[..., WorkerProcess], broker: Broker, kafka: Kafka, names: Names
) -> None:
    """Monitoring that writes in transactions leaves a commit or abort marker after each
    one: an offset with no record. The worker reads committed signals only (an aborted
    one opens nothing), and its commits pass the markers, so its lag drains to 0."""
    await kafka.ensure_topic(names.active)
    worker = start_worker()
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.address, transactional_id=f"monitoring-{names.app_id}"
    )
    await producer.start()
    try:
        for n in range(6):
            async with producer.transaction():
                for k in range(3):
                    run = run_payload(cluster_id="cl-txn", instance_id=f"inst-{n}-{k}")
                    await producer.send(names.active, orjson.dumps(run), key=f"{n}-{k}".encode())
        await producer.begin_transaction()
        aborted = run_payload(cluster_id="cl-txn", instance_id="inst-aborted")
        await producer.send(names.active, orjson.dumps(aborted), key=b"aborted")
        await producer.abort_transaction()
        ends = {}
        for p in range(PARTITIONS):
            tp = TopicPartition(names.active, p)
            ends[tp] = (await _ends(broker.address, names.active))[tp]
    finally:
        await producer.stop()
    opened = await kafka.read(names.transitions, at_least=18, settle=3.0)
    assert sorted(t["remediation"]["instance_id"] for t in opened) == sorted(
        f"inst-{n}-{k}" for n in range(6) for k in range(3)
    )
    lag = await wait_drained(broker.address, names.app_id, ends, timeout=45)
    offsets = await committed(broker.address, names.app_id, list(ends))
    assert lag == 0, f"committed {offsets}, ends {ends}:\n{worker.log()[-2000:]}"
