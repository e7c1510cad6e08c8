"""The pipeline end to end on a real broker: health signals in, transitions and dead
letters out, read back with a real consumer."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.brokers import Broker
from tests.builders import event_payload, run_payload
from tests.integration.conftest import (
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    unique_names,
)

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


async def _closed_and_explained(
    worker: WorkerProcess, kafka: Kafka, names: Names, cluster: str, instance: str
) -> tuple[str, dict[str, Any]]:
    """A failing run opens a remediation, rejected through the API (closed: archived);
    returns its id and the instance's explanation (decisions, closed remediations)."""
    await kafka.produce(
        names.active, run_payload(cluster_id=cluster, instance_id=instance), key=b"i"
    )
    (opened,) = await kafka.read(names.transitions, at_least=1)
    base = f"{worker.base_url}/v1/compute/clusters/{cluster}/instances/{instance}"
    async with httpx.AsyncClient(headers={"Authorization": "Bearer t"}, timeout=30) as client:
        rejected = await client.post(
            f"{base}/remediations/{opened['remediation_id']}/reject", json={"comment": "no"}
        )
        assert rejected.status_code == 200, rejected.text
        explained = (await client.get(f"{base}/explain")).json()
    return opened["remediation_id"], explained


async def _explain(worker: WorkerProcess, cluster: str, instance: str) -> dict[str, Any]:
    url = f"{worker.base_url}/v1/compute/clusters/{cluster}/instances/{instance}/explain"
    async with httpx.AsyncClient(headers={"Authorization": "Bearer t"}, timeout=30) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    explained: dict[str, Any] = answer.json()
    return explained


def _tables_on_disk(worker: WorkerProcess, app_id: str) -> set[str]:
    tables = worker.log_path.parent / "data" / app_id
    return {path.name.rsplit("-", 1)[0] for path in tables.rglob("*.db") if path.is_dir()}


async def test_closed_remediations_and_decisions_live_in_rocksdb_and_survive_a_restart(
    start_worker: Callable[..., WorkerProcess], kafka: Kafka, names: Names
) -> None:
    """The cold tables are in RocksDB even with the memory store (the default) for the
    hot ones: the worker's memory does not grow with history; a restart reads them back
    from disk (and the changelog's tail) and explain answers as before."""
    worker = start_worker(REMEDIATOR_API_TOKENS="ops=t")
    remediation_id, before = await _closed_and_explained(worker, kafka, names, "cl-h", "i-1")
    assert [r["id"] for r in before["recent"]] == [remediation_id]
    assert before["recent"][0]["state"] == "CANCELLED"
    assert [d["remediation_id"] for d in before["decisions"]] == [remediation_id]
    assert worker.stop() == 0
    assert _tables_on_disk(worker, names.app_id) == {"archive", "decisions"}

    again = start_worker(REMEDIATOR_API_TOKENS="ops=t")
    after = await _explain(again, "cl-h", "i-1")
    assert after["recent"] == before["recent"]
    assert after["decisions"] == before["decisions"]
    # Read back from the local files, not rebuilt: on Apache Kafka a metadata look-up
    # that knew no topic once made every restart discard them.
    assert "the local RocksDB files are at changelog offset" not in again.log()


@pytest.mark.brokers("tansu")  # the brokers do not matter: a new app id's changelogs
async def test_local_table_files_ahead_of_their_changelogs_are_discarded_at_start(
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    names: Names,
    broker: Broker,
    tmp_path: Path,
) -> None:
    """RocksDB files whose changelogs the broker no longer has (the embedded broker keeps
    topics in memory only; a topic deleted and created again) must not come back as
    history: they claim offsets the new changelogs do not have, and are removed."""
    worker = start_worker(REMEDIATOR_API_TOKENS="ops=t")
    await _closed_and_explained(worker, kafka, names, "cl-s", "i-1")
    assert worker.stop() == 0
    # The same local files, for changelogs that are empty: a broker that lost them.
    lost = unique_names()
    data = tmp_path / "data"
    shutil.copytree(data / names.app_id, data / lost.app_id)

    again = launch_worker(broker, lost, tmp_path, REMEDIATOR_API_TOKENS="ops=t")
    try:
        after = await _explain(again, "cl-s", "i-1")
        log = again.log()
    finally:
        again.stop()
    assert (after["recent"], after["decisions"]) == ([], [])
    assert "the local RocksDB files are at changelog offset" in log
    assert f"{lost.app_id}-decisions-changelog" in log


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
