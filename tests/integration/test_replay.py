"""`remediator policy replay` against a real worker's history: the running policy
replayed from the input topics opens exactly what the worker opened, instance for
instance; a different policy disagrees.

The history is a simulated fleet's (``remediator.simulation.fleet``), event times an hour
ago onwards, large enough for storms to trip the blast radius and queue proposals. Each
record carries its event time as its timestamp (the worker decides on that) and is keyed
by its cluster, and each cluster's signals are on one input topic only (the first
cluster's alerts, the second's test runs): a cluster's signals are then read by the
worker in event-time order, the order the replay applies them in. Execution is off
(``REMEDIATOR_MAX_RUNNING_PER_CLUSTER=0``) and nobody approves, as the replay models it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from remediator.domain.policy import default_policy_text
from remediator.simulation.fleet.generator import cluster_name
from tests.builders import fleet_history
from tests.integration.conftest import OPERATOR_TOKENS, Broker, Kafka, Names, WorkerProcess

pytestmark = pytest.mark.integration


def history(start: datetime) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The first cluster's alerts and the second cluster's test runs (see above)."""
    kept = {cluster_name(0): "event", cluster_name(1): "run"}
    return [
        (at, kind, payload)
        for at, kind, payload in fleet_history(count=1400, start=start, seed=7)
        if kept.get(payload["cluster_id"]) == kind
    ]


async def produce(broker: Broker, names: Names, signals: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.address)
    await producer.start()
    try:
        sent = [
            await producer.send(
                names.active if kind == "run" else names.passive,
                orjson.dumps(payload),
                key=payload["cluster_id"].encode(),
                timestamp_ms=int(at.timestamp() * 1000),
            )
            for at, kind, payload in signals
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def wait_processed(
    client: httpx.AsyncClient, last: dict[str, datetime], timeout: float = 30.0
) -> None:
    """Until each cluster's clock (its newest signal's time) is its last signal's: each
    cluster's signals are read in order, so all of them were applied."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: dict[str, datetime] = {}
    while asyncio.get_running_loop().time() < deadline:
        answer = await client.get("/v1/compute/clusters")
        assert answer.status_code == 200, answer.text
        seen = {
            c["cluster_id"]: datetime.fromisoformat(c["as_of"])
            for c in answer.json()["clusters"]
            if c.get("as_of")
        }
        if all(seen.get(cluster) == at for cluster, at in last.items()):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"clusters at {seen}, expected {last}")


async def topics_of(broker: Broker) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def replay_cli(worker: WorkerProcess, *argv: str) -> dict[str, Any]:
    env = {k: v for k, v in worker.env.items() if k != "REMEDIATOR_WEB_PORT"}
    result = subprocess.run(
        [sys.executable, "-m", "remediator.cli", "policy", "replay", *argv, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.brokers("tansu", "kafka")
async def test_replaying_the_running_policy_reproduces_what_was_opened(
    broker: Broker,
    names: Names,
    kafka: Kafka,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    api: Callable[[WorkerProcess], httpx.AsyncClient],
) -> None:
    running = tmp_path / "running.toml"
    running.write_text(default_policy_text())  # its real storm limits
    worker = start_worker(
        REMEDIATOR_POLICY_FILE=str(running),
        REMEDIATOR_API_TOKENS=OPERATOR_TOKENS,
        REMEDIATOR_MAX_RUNNING_PER_CLUSTER="0",
    )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    signals = history(start)
    await produce(broker, names, signals)
    last = {payload["cluster_id"]: at for at, _, payload in signals}
    await wait_processed(api(worker), last)
    transitions = await kafka.read(names.transitions, at_least=1, settle=1.0)
    opened_live = {
        (f"{t['remediation']['cluster_id']}/{t['remediation']['instance_id']}", t["remediation_id"])
        for t in transitions
        if t["from_state"] is None
    }
    events = await kafka.read(names.policy_events, at_least=1, settle=0.2)
    assert any(e["kind"] == "BLAST_RADIUS_TRIPPED" for e in events)  # a storm it was
    assert any(e["kind"] == "QUEUE_ADMITTED" for e in events)

    # The running policy (REMEDIATOR_POLICY_FILE, as --against current reads it) both ways.
    since = (start - timedelta(minutes=1)).isoformat()
    topics_before = await topics_of(broker)
    same = replay_cli(worker, "--policy", str(running), "--from", since)
    assert same["input"]["signals"] == len(signals)
    assert same["input"]["malformed"] == 0
    assert same["baseline"]["policy"] == same["candidate"]["policy"]
    opened_replayed = {
        (o["instance"], o["remediation_id"]) for o in same["baseline"]["opened_remediations"]
    }
    assert opened_replayed == opened_live
    assert same["baseline"]["policy_events"]["BLAST_RADIUS_TRIPPED"] == sum(
        e["kind"] == "BLAST_RADIUS_TRIPPED" for e in events
    )
    assert same["disagreements"] == {"total": 0, "shown": []}

    # By time: the broker's time index positions each partition at --from.
    middle, end = signals[len(signals) // 3][0], signals[2 * len(signals) // 3][0]
    window = replay_cli(
        worker, "--policy", str(running), "--from", middle.isoformat(), "--to", end.isoformat()
    )
    assert window["input"]["signals"] == sum(middle <= at <= end for at, _, _ in signals)

    smaller = tmp_path / "smaller.toml"
    smaller.write_text("[blast_radius]\nmax_open = 2\n")
    other = replay_cli(worker, "--policy", str(smaller), "--cluster", cluster_name(0))
    assert other["candidate"]["opened"] < other["baseline"]["opened"]
    assert other["disagreements"]["shown"]
    assert all(
        d["instance"].startswith(cluster_name(0) + "/") for d in other["disagreements"]["shown"]
    )
    assert await topics_of(broker) == topics_before  # nothing created on the broker
