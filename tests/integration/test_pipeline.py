"""The pipeline end to end on a real broker: health signals in, transitions and dead
letters out, read back with a real consumer."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.builders import event_payload, run_payload
from tests.integration.conftest import Kafka, Names, WorkerProcess

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")


async def test_one_failed_run_creates_exactly_one_remediation(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    start_worker()
    run = run_payload(cluster_id="cl-a", instance_id="inst-1", test="GPU_BURN")
    await kafka.produce(names.active, run, key=b"inst-1")

    (transition,) = await kafka.read(names.transitions, at_least=1)

    rem = transition["remediation"]
    assert transition["_key"] == "cl-a/inst-1"
    assert transition["sequence"] == 1
    assert transition["from_state"] is None
    assert transition["to_state"] == "PENDING_APPROVAL"
    assert transition["transition_id"] == f"{rem['id']}:1"
    assert rem["state"] == "PENDING_APPROVAL"
    assert rem["trigger"] == "REMEDIATION_TRIGGER_AUTOMATED"
    assert rem["mode"] == "REMEDIATION_MODE_HOST_AWARE"
    assert rem["active_health_check_run_id"] == run["run_id"]
    assert rem["requested_by"] == "system:remediator"
    assert rem["create_time"].endswith("Z")


async def test_same_run_three_times_still_creates_exactly_one(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    start_worker()
    run = run_payload(cluster_id="cl-a", instance_id="inst-2")
    for _ in range(3):
        await kafka.produce(names.active, run, key=b"inst-2")

    transitions = await kafka.read(names.transitions, at_least=1, settle=3.0)

    assert len(transitions) == 1
    assert transitions[0]["remediation"]["active_health_check_run_id"] == run["run_id"]


async def test_failed_run_and_critical_event_make_one_remediation_with_both_ids(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    start_worker()
    run = run_payload(cluster_id="cl-a", instance_id="inst-3")
    alert = event_payload(
        cluster_id="cl-a", instance_id="inst-3", observed_at="2026-11-24T12:01:00Z"
    )
    await kafka.produce(names.active, run)  # no key: the worker re-keys by instance
    await kafka.produce(names.passive, alert, key=b"inst-3")

    transitions = await kafka.read(names.transitions, at_least=1, settle=3.0)

    # The alert either joins the remediation while it waits for the cluster's admission
    # (one creation carrying both ids) or is attached to it once open (a second change).
    assert len({t["remediation_id"] for t in transitions}) == 1
    assert [t["sequence"] for t in transitions] == list(range(1, len(transitions) + 1))
    assert len(transitions) <= 2
    latest = transitions[-1]["remediation"]
    assert latest["active_health_check_run_id"] == run["run_id"]
    assert latest["passive_health_check_event_id"] == alert["event_id"]
    assert {s["id"] for s in latest["signals"]} == {run["run_id"], alert["event_id"]}
    assert transitions[-1]["to_state"] == "PENDING_APPROVAL"


async def test_malformed_message_goes_to_dead_letter_and_good_ones_still_flow(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    start_worker()
    first = run_payload(cluster_id="cl-b", instance_id="inst-1")
    second = run_payload(cluster_id="cl-b", instance_id="inst-2")
    broken = orjson.dumps({**run_payload(), "result": "EXPLODED"})
    # One partition for the three so that their order is certain.
    await kafka.produce(names.active, first, key=b"same")
    await kafka.produce(names.active, broken, key=b"same")
    await kafka.produce(names.active, second, key=b"same")

    (letter,) = await kafka.read(names.dead_letter, at_least=1)
    transitions = await kafka.read(names.transitions, at_least=2)

    assert letter["source_topic"] == names.active
    assert letter["key"] == "same"
    assert orjson.loads(letter["payload"])["result"] == "EXPLODED"
    assert "result" in letter["error"]
    assert "\n" not in letter["error"]
    assert letter["received_at"].endswith("Z")
    assert {t["remediation"]["active_health_check_run_id"] for t in transitions} == {
        first["run_id"],
        second["run_id"],
    }


async def test_non_json_and_binary_input_is_dead_lettered_readably(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    start_worker()
    await kafka.produce(names.passive, b"this is not json", key=b"k")
    await kafka.produce(names.passive, b"\xff\xfe\x00binary", key=b"k")
    await kafka.produce(names.passive, event_payload(event_id=str(uuid.uuid4())), key=b"k")

    letters = await kafka.read(names.dead_letter, at_least=2)
    transitions = await kafka.read(names.transitions, at_least=1)

    assert [letter["payload_encoding"] for letter in letters] == [None, "base64"]
    assert letters[0]["payload"] == "this is not json"
    assert all("not valid JSON" in letter["error"] for letter in letters)
    assert len(transitions) == 1


async def test_with_the_rocksdict_store_state_survives_a_restart_on_local_disk(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    store = {"REMEDIATOR_TABLE_STORE": "rocksdict", "REMEDIATOR_API_TOKENS": "ops=t"}
    worker = start_worker(**store)
    run = run_payload(cluster_id="cl-r", instance_id="inst-1")
    await kafka.produce(names.active, run, key=b"inst-1")
    (opened,) = await kafka.read(names.transitions, at_least=1)
    assert worker.stop() == 0
    assert list((worker.log_path.parent / "data").rglob("*.sst")) or list(
        (worker.log_path.parent / "data").rglob("CURRENT")
    ), "no RocksDB files under the data dir"

    again = start_worker(**store)
    await kafka.produce(names.active, run, key=b"inst-1")  # a repeat: still counted once
    headers = {"Authorization": "Bearer t"}
    url = f"{again.base_url}/v1/compute/clusters/cl-r/instances/inst-1/remediations"
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        listed = (await client.get(url)).json()["remediations"]
    assert [r["id"] for r in listed] == [opened["remediation_id"]]
    transitions = await kafka.read(names.transitions, at_least=1, settle=3.0)
    assert len(transitions) == 1


async def test_an_oversized_input_is_dead_lettered_whole_and_the_stream_goes_on(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    """A schema-valid 1 MB event (larger than REMEDIATOR_MAX_INPUT_BYTES) must neither
    crash ingest nor block what follows: it is dead-lettered with its size and SHA-256."""
    start_worker()
    huge = run_payload(cluster_id="cl-big", instance_id="i-1", message="x" * (1000 * 1000))
    after = run_payload(cluster_id="cl-big", instance_id="i-2")
    raw = orjson.dumps(huge)
    await kafka.produce(names.active, raw, key=b"same")
    await kafka.produce(names.active, after, key=b"same")
    (letter,) = await kafka.read(names.dead_letter, at_least=1)
    assert "larger than the limit of 262144 bytes" in letter["error"]
    assert letter["payload_size"] == len(raw)
    assert letter["payload_truncated"] is True
    (transition,) = await kafka.read(names.transitions, at_least=1)
    assert transition["remediation"]["active_health_check_run_id"] == after["run_id"]
