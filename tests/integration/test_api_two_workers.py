"""Two workers in one group: a request that reaches the worker which does not own the
instance's cluster is answered correctly (routed through the owner, not refused), and a
signal read by the worker that does not own its cluster is forwarded to the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from remediator.pipeline.messages import cluster_partition
from tests.builders import run_payload
from tests.integration.conftest import PARTITIONS, Kafka, Names, WorkerProcess

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")

TOKENS = {"REMEDIATOR_API_TOKENS": "alice=alice-token"}
ALICE = {"Authorization": "Bearer alice-token"}


def owned(worker: WorkerProcess) -> set[int]:
    return set(httpx.get(f"{worker.base_url}/healthz").json()["partitions"])


def cluster_owned_by(partitions: set[int]) -> str:
    """A cluster id whose partition is one of ``partitions``."""
    return next(
        f"cl-2w-{n}"
        for n in range(1000)
        if cluster_partition(f"cl-2w-{n}", PARTITIONS) in partitions
    )


async def wait_split(a: WorkerProcess, b: WorkerProcess) -> tuple[set[int], set[int]]:
    for _ in range(100):
        parts_a, parts_b = owned(a), owned(b)
        if parts_a and parts_b and parts_a | parts_b == set(range(PARTITIONS)):
            return parts_a, parts_b
        await asyncio.sleep(0.2)
    raise AssertionError(f"partitions never split: {owned(a)} / {owned(b)}")


async def test_create_approve_and_list_through_the_worker_that_does_not_own_the_instance(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    first = start_worker(**TOKENS)
    second = start_worker(**TOKENS)
    await asyncio.to_thread(first.wait_ready)
    parts_first, parts_second = await wait_split(first, second)
    assert not parts_first & parts_second

    cluster = cluster_owned_by(parts_second)
    manual_instance, automated_instance = "inst-1", "inst-2"
    base = f"/v1/compute/clusters/{cluster}/instances"
    async with httpx.AsyncClient(base_url=first.base_url, headers=ALICE, timeout=30) as via_first:
        created = await via_first.post(
            f"{base}/{manual_instance}/remediations", params={"remediation_id": "m-1"}
        )
        assert created.status_code == 200, created.text
        assert created.json()["state"] == "PENDING"

        await kafka.produce(
            names.active, run_payload(cluster_id=cluster, instance_id=automated_instance)
        )
        for _ in range(100):
            listed = (await via_first.get(f"{base}/{automated_instance}/remediations")).json()
            if listed["remediations"]:
                break
            await asyncio.sleep(0.2)
        (opened,) = listed["remediations"]
        approved = await via_first.post(
            f"{base}/{automated_instance}/remediations/{opened['id']}/approve",
            json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "PENDING"
        assert approved.json()["reviewed_by"] == "alice"

        everything = (await via_first.get(f"{base}/-/remediations")).json()["remediations"]
        assert {r["id"] for r in everything} == {"m-1", opened["id"]}

    async with httpx.AsyncClient(base_url=second.base_url, headers=ALICE, timeout=30) as via_owner:
        got = await via_owner.get(f"{base}/{automated_instance}/remediations/{opened['id']}")
        assert got.json() == approved.json()
        again = await via_owner.post(
            f"{base}/{manual_instance}/remediations", params={"remediation_id": "m-1"}
        )
        assert again.json() == created.json()

    transitions = await kafka.read(names.transitions, at_least=3)
    assert [
        (t["remediation_id"], t["sequence"]) for t in transitions if t["remediation_id"] == "m-1"
    ] == [("m-1", 1)]
    assert [t["to_state"] for t in transitions if t["remediation_id"] == opened["id"]] == [
        "PENDING_APPROVAL",
        "PENDING",
    ]
