"""The CLI client as an operator runs it: real ``remediator`` processes against one worker.

One worker serves the whole module (with execution off, so an approved remediation stays
PENDING); each test works in a cluster of its own. Recommendations are opened the real
way, by a failing health check on the worker's input topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from remediator.kafka.embedded import free_port
from tests.builders import run_payload
from tests.integration.conftest import (
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    unique_names,
)

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def cli_names() -> Names:
    return unique_names()


@pytest.fixture(scope="module")
def worker(
    broker: Broker, cli_names: Names, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = launch_worker(
        broker,
        cli_names,
        tmp_path_factory.mktemp("console"),
        REMEDIATOR_API_TOKENS=f"operator={TOKEN}",
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


def remediator(
    worker: WorkerProcess, *args: str, token: str = TOKEN, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``remediator ARGS`` with REMEDIATOR_URL and REMEDIATOR_TOKEN set, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.update(REMEDIATOR_URL=url or worker.base_url, REMEDIATOR_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "remediator.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


async def recommend(
    kafka: Kafka, names: Names, worker: WorkerProcess, cluster: str
) -> dict[str, Any]:
    """A failing DCGM run on a new instance of ``cluster``; returns the PENDING_APPROVAL
    remediation the worker opens for it, as the API shows it."""
    instance = f"i-{uuid.uuid4().hex[:6]}"
    run = run_payload(cluster_id=cluster, instance_id=instance)
    await kafka.produce(names.active, run, key=instance.encode())
    url = f"{worker.base_url}/v1/compute/clusters/{cluster}/instances/{instance}/remediations"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(150):
            found = (await client.get(url)).json()["remediations"]
            if found:
                (remediation,) = found
                assert remediation["active_health_check_run_id"] == run["run_id"]
                return dict(remediation)
            await asyncio.sleep(0.1)
    raise AssertionError(f"no remediation opened for {instance}:\n{worker.log()[-2000:]}")


def target(remediation: dict[str, Any]) -> list[str]:
    return [
        remediation["id"],
        "--cluster",
        remediation["cluster_id"],
        "--instance",
        remediation["instance_id"],
    ]


async def test_list_prints_a_table_and_the_api_answer_as_json(
    worker: WorkerProcess, cli_names: Names, kafka: Kafka, cluster: str
) -> None:
    first = await recommend(kafka, cli_names, worker, cluster)
    second = await recommend(kafka, cli_names, worker, cluster)

    answer = as_json(
        remediator(worker, "remediations", "list", "--cluster", cluster, "--output", "json")
    )
    assert [r["id"] for r in answer["remediations"]] == [second["id"], first["id"]]  # newest first
    assert answer["has_next"] is False

    header, *rows = ok(
        remediator(worker, "remediations", "list", "-c", cluster, "--state", "pending_approval")
    ).splitlines()
    assert header.split()[:4] == ["ID", "CLUSTER", "INSTANCE", "STATE"]
    assert [row.split()[0] for row in rows] == [second["id"], first["id"]]
    assert rows[1].split()[1:6] == [cluster, first["instance_id"], "PENDING_APPROVAL",
                                    "HOST_AWARE", "AUTOMATED"]  # fmt: skip
    assert rows[1].endswith(f"DCGM_DIAG FAILED run {first['active_health_check_run_id'][:8]}")

    # Filters reach the API: none of this cluster's are RUNNING.
    assert ok(remediator(worker, "remediations", "list", "-c", cluster, "--state", "RUNNING")) == (
        "no remediations\n"
    )
    # Without --cluster: the whole fleet, with the same filters.
    fleet = as_json(
        remediator(worker, "remediations", "list", "--state", "PENDING_APPROVAL", "-o", "json")
    )
    ids = [r["id"] for r in fleet["remediations"]]
    assert ids.index(second["id"]) < ids.index(first["id"])
    assert {r["state"] for r in fleet["remediations"]} == {"PENDING_APPROVAL"}

    paged = remediator(worker, "remediations", "list", "-c", cluster, "--page-size", "1")
    assert paged.returncode == 0
    assert len(paged.stdout.splitlines()) == 2
    assert "more remediations: --all-pages, or --page-token " in paged.stderr
    everything = as_json(
        remediator(worker, "remediations", "list", "-c", cluster, "--page-size", "1",
                   "--all-pages", "-o", "json")
    )  # fmt: skip
    assert [r["id"] for r in everything["remediations"]] == [second["id"], first["id"]]


async def test_approve_with_a_mode_override_and_a_comment(
    worker: WorkerProcess, cli_names: Names, kafka: Kafka, cluster: str
) -> None:
    remediation = await recommend(kafka, cli_names, worker, cluster)
    assert remediation["mode"] == "REMEDIATION_MODE_HOST_AWARE"

    row = ok(
        remediator(worker, "remediations", "approve", *target(remediation),
                   "--mode", "REBOOT_VM", "--comment", "try a reboot first")
    ).splitlines()[1]  # fmt: skip
    assert row.split()[3:5] == ["PENDING", "REBOOT_VM"]

    shown = as_json(remediator(worker, "remediations", "get", *target(remediation), "-o", "json"))
    assert shown["state"] == "PENDING"
    assert shown["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    assert shown["reviewed_by"] == "operator"
    assert shown["review_comment"] == "try a reboot first"
    detail = ok(remediator(worker, "remediations", "get", *target(remediation))).splitlines()
    assert "reviewed by:  operator at " + shown["review_time"][:19].replace("T", " ") in detail


async def test_reject_then_cancel_is_refused_with_the_apis_message(
    worker: WorkerProcess, cli_names: Names, kafka: Kafka, cluster: str
) -> None:
    remediation = await recommend(kafka, cli_names, worker, cluster)
    rejected = as_json(
        remediator(worker, "remediations", "reject", *target(remediation),
                   "--comment", "known flaky test", "-o", "json")
    )  # fmt: skip
    assert rejected["state"] == "CANCELLED"
    assert rejected["review_comment"] == "known flaky test"

    refused = remediator(worker, "remediations", "cancel", *target(remediation))
    assert refused.returncode == 1
    assert refused.stdout == ""
    # The API's own words, as it answers the same request.
    path = (
        f"/v1/compute/clusters/{cluster}/instances/{remediation['instance_id']}"
        f"/remediations/{remediation['id']}/cancel"
    )
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        answer = await client.post(worker.base_url + path, timeout=30)
    assert answer.status_code == 409
    message = answer.json()["error"]["message"]
    assert refused.stderr == f"remediator: {message} (409 FAILED_PRECONDITION)\n"


async def test_create_a_manual_remediation_once_with_an_id(
    worker: WorkerProcess, cluster: str
) -> None:
    ticket = f"ticket-{uuid.uuid4().hex[:6]}"
    create = ["remediations", "create", "-c", cluster, "-i", "inst-0042", "--mode", "vm_only",
              "--reason", "NVLink errors", "--id", ticket, "-o", "json"]  # fmt: skip
    created = as_json(remediator(worker, *create))
    assert created["id"] == ticket
    assert (created["state"], created["trigger"], created["mode"]) == (
        "PENDING", "REMEDIATION_TRIGGER_MANUAL", "REMEDIATION_MODE_VM_ONLY"
    )  # fmt: skip
    assert as_json(remediator(worker, *create)) == created  # the same call creates nothing


def test_pause_safety_and_resume_a_cluster(worker: WorkerProcess, cluster: str) -> None:
    paused = ok(remediator(worker, "clusters", "pause", cluster, "--reason", "rack swap"))
    assert f"cluster:          {cluster}" in paused.splitlines()
    assert "paused:           rack swap (operator, " in paused

    safety = as_json(remediator(worker, "clusters", "safety", cluster, "-o", "json"))
    assert safety["paused"]["reason"] == "rack swap"
    assert safety["paused"]["by"] == "operator"

    resumed = ok(remediator(worker, "clusters", "resume", cluster))
    assert "paused:           no" in resumed.splitlines()
    assert (
        as_json(remediator(worker, "clusters", "safety", cluster, "-o", "json"))["paused"] is None
    )


async def test_clusters_list_names_the_clusters_the_worker_knows(
    worker: WorkerProcess, cli_names: Names, kafka: Kafka, cluster: str
) -> None:
    await recommend(kafka, cli_names, worker, cluster)
    known = as_json(remediator(worker, "clusters", "list", "-o", "json"))
    assert cluster in [c["cluster_id"] for c in known["clusters"]]
    rows = ok(remediator(worker, "clusters", "list")).splitlines()
    assert rows[0].split()[:3] == ["CLUSTER", "INSTANCES", "OPEN"]
    (row,) = [row for row in rows[1:] if row.split()[0] == cluster]
    (summary,) = [c for c in known["clusters"] if c["cluster_id"] == cluster]
    # One known instance with one recommendation waiting, counted in the blast radius.
    assert row.split()[1:4] == ["1", "PENDING_APPROVAL", "1"]
    assert f"  1/{summary['blast_radius_limit']}  " in row


async def test_explain_shows_the_decision_that_opened_it(
    worker: WorkerProcess, cli_names: Names, kafka: Kafka, cluster: str
) -> None:
    remediation = await recommend(kafka, cli_names, worker, cluster)
    text = ok(
        remediator(worker, "explain", "-c", cluster, "-i", remediation["instance_id"])
    ).splitlines()
    assert f"open:        {remediation['id']} PENDING_APPROVAL HOST_AWARE" in text
    decision = text[text.index(next(t for t in text if t.startswith("AT (UTC)"))) + 1]
    assert "DCGM_DIAG FAILED run" in decision
    assert "OPENED" in decision
    assert remediation["id"] in decision


def test_a_bad_token_prints_the_apis_message_and_exits_1(worker: WorkerProcess) -> None:
    result = remediator(worker, "remediations", "list", token="not-the-token")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "remediator: invalid token (401 UNAUTHENTICATED)\n"
    missing = remediator(worker, "clusters", "list", token="")
    assert missing.returncode == 1
    assert missing.stderr.startswith("remediator: missing credentials")
    assert missing.stderr.rstrip().endswith("(give --token or set REMEDIATOR_TOKEN)")


def test_an_unknown_remediation_is_the_apis_404(worker: WorkerProcess, cluster: str) -> None:
    result = remediator(worker, "remediations", "get", "nope", "-c", cluster, "-i", "i1")
    assert result.returncode == 1
    assert "(404 NOT_FOUND)" in result.stderr


def test_an_unreachable_url_says_so_and_exits_3(worker: WorkerProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = remediator(worker, "remediations", "list", url=url)
    assert result.returncode == 3
    assert result.stderr.startswith(f"remediator: cannot reach {url}: ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_usage_errors_exit_2(worker: WorkerProcess) -> None:
    result = remediator(worker, "remediations", "list", "--instance", "i1")
    assert result.returncode == 2
    assert "--instance needs --cluster" in result.stderr
    assert remediator(worker, "remediations", "approve", "x").returncode == 2
