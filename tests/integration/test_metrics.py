"""``GET /metrics`` of a real worker on a real broker, read as Prometheus reads it.

One worker (with the simulated control plane as a process of its own) serves the module.
Each test sends known traffic to the real topics and the real API, then scrapes
``/metrics`` over HTTP, parses it with prometheus-client's parser, and checks that the
counters moved by exactly that traffic: deltas against a scrape taken before, in a
cluster of the test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import event_payload, run_payload
from tests.integration.conftest import (
    OPERATOR_TOKEN,
    PARTITIONS,
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    unique_names,
)
from tests.integration.test_executor import STEPS, ControlPlane, executor_env, unique_by_sequence

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
V1 = "/v1/compute/clusters"
RESOURCE = V1 + "/{cluster_id}/instances/{instance_id}/remediations/{remediation_id}"


@pytest.fixture(scope="module")
def metrics_names() -> Names:
    return unique_names()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("cp") / "control-plane.log")
    actions = sorted({action for steps in STEPS.values() for action in steps})
    cp.start(*(arg for action in actions for arg in ("--latency", f"{action}=0.2")))
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def worker(
    broker: Broker,
    metrics_names: Names,
    control_plane: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    directory: Path = tmp_path_factory.mktemp("metrics")
    process = launch_worker(broker, metrics_names, directory, **executor_env(control_plane))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(worker: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.base_url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


async def scrape(worker: WorkerProcess) -> Samples:
    """``/metrics`` as a scraper gets it: no credentials, parsed by prometheus-client."""
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as anonymous:
        response = await anonymous.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def deltas(before: Samples, after: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of ``name`` that moved, by its labels."""
    moved = {}
    for (sample, labels), now in after.items():
        if sample == name and now != before.get((sample, labels), 0.0):
            moved[labels] = now - before.get((sample, labels), 0.0)
    return moved


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


async def settled(worker: WorkerProcess, ready: Any, timeout: float = 30.0) -> Samples:
    """Scrape until ``ready(samples)``, then once more after a pause: nothing may move on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        samples = await scrape(worker)
        if ready(samples):
            await asyncio.sleep(1.5)
            return await scrape(worker)
        assert loop.time() < deadline, "the metrics did not reach the expected figures"
        await asyncio.sleep(0.3)


def now_iso(shift: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + shift).isoformat().replace("+00:00", "Z")


async def test_metrics_need_no_credentials(worker: WorkerProcess) -> None:
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as anonymous:
        plain = await anonymous.get("/metrics")
        wrong = await anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert plain.status_code == wrong.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(plain.text)}
    assert {
        "remediator_signals",
        "remediator_transitions",
        "remediator_remediations_opened",
        "remediator_proposals_blocked",
        "remediator_open_remediations",
        "remediator_executor_step_duration_seconds",
        "remediator_control_plane_retries",
        "remediator_control_plane_errors",
        "remediator_api_requests",
        "remediator_api_request_duration_seconds",
        "remediator_consumer_lag_messages",
        "remediator_time_to_success_seconds",
    } <= families


async def test_counters_move_by_exactly_the_traffic_sent(
    worker: WorkerProcess,
    client: httpx.AsyncClient,
    kafka: Kafka,
    metrics_names: Names,
    cluster: str,
) -> None:
    names = metrics_names
    before = await scrape(worker)

    async def active(instance: str, **fields: Any) -> dict[str, Any]:
        payload = run_payload(cluster_id=cluster, instance_id=instance, **fields)
        await kafka.produce(names.active, payload, key=instance.encode())
        return payload

    for n in range(5):  # passing runs: used
        await active(f"p-{n}", result="PASSED", completed_at=now_iso())
    repeated = await active("d-1", result="PASSED", completed_at=now_iso())
    await kafka.produce(names.active, repeated, key=b"d-1")  # the same run again: duplicate
    await active("s-1", result="PASSED", completed_at=now_iso())
    await active("s-1", result="PASSED", completed_at=now_iso(-timedelta(days=8)))  # stale
    await kafka.produce(names.passive, b"{not json", key=b"x-1")  # dead-lettered
    await kafka.produce(
        names.passive,
        event_payload(cluster_id=cluster, instance_id="e-1", severity="INFO"),
        key=b"e-1",
    )
    opted = await client.put(f"{V1}/{cluster}/instances/o-1/opt-out", json={"reason": "bench"})
    assert opted.status_code == 200, opted.text
    await active("o-1", completed_at=now_iso())  # failing, opted out: blocked
    await active("f-1", completed_at=now_iso())  # failing: opens a remediation
    missing = await client.get(f"{V1}/{cluster}/instances/f-1/remediations/no-such-one")
    assert missing.status_code == 404
    assert (await client.get("/v1/nothing/here")).status_code == 404

    topic_active, topic_passive = names.active, names.passive
    after = await settled(
        worker,
        lambda s: (
            (
                value(s, "remediator_signals_total", topic=topic_active, result="used")
                - value(before, "remediator_signals_total", topic=topic_active, result="used")
                >= 9
            )
            and value(
                s, "remediator_open_remediations", cluster_id=cluster, state="PENDING_APPROVAL"
            )
            == 1
        ),
    )
    assert deltas(before, after, "remediator_signals_total") == {
        labels(topic=topic_active, result="used"): 9,
        labels(topic=topic_active, result="duplicate"): 1,
        labels(topic=topic_active, result="stale"): 1,
        labels(topic=topic_passive, result="used"): 1,
        labels(topic=topic_passive, result="dead_lettered"): 1,
    }
    (opened,) = (await client.get(f"{V1}/{cluster}/instances/f-1/remediations")).json()[
        "remediations"
    ]
    assert deltas(before, after, "remediator_remediations_opened_total") == {
        labels(rule=opened["rule"], mode=opened["mode"]): 1
    }
    assert deltas(before, after, "remediator_transitions_total") == {
        labels(event="CREATE_AUTOMATED"): 1
    }
    assert deltas(before, after, "remediator_proposals_blocked_total") == {
        labels(reason="opt_out"): 1
    }
    open_now = {
        dict(key)["state"]: count
        for (name, key), count in after.items()
        if name == "remediator_open_remediations" and dict(key)["cluster_id"] == cluster
    }
    assert open_now == {
        "PENDING_APPROVAL": 1,
        "PENDING": 0,
        "QUARANTINING": 0,
        "QUARANTINED": 0,
        "RUNNING": 0,
    }
    requests = deltas(before, after, "remediator_api_requests_total")
    assert requests[labels(method="GET", route=RESOURCE, status="404")] == 1
    assert requests[labels(method="GET", route="unmatched", status="404")] == 1
    opt_out = V1 + "/{cluster_id}/instances/{instance_id}/opt-out"
    assert requests[labels(method="PUT", route=opt_out, status="200")] == 1
    # The route template, never the raw path, is the label.
    assert not [key for key in after if cluster in str(dict(key[1]).get("route", ""))]
    assert (
        value(after, "remediator_api_request_duration_seconds_count", method="GET", route=RESOURCE)
        - value(
            before, "remediator_api_request_duration_seconds_count", method="GET", route=RESOURCE
        )
        == 1
    )


async def test_a_remediation_carried_out_is_timed_and_its_retries_counted(
    worker: WorkerProcess,
    client: httpx.AsyncClient,
    kafka: Kafka,
    metrics_names: Names,
    control_plane: ControlPlane,
    cluster: str,
) -> None:
    await kafka.produce(
        metrics_names.active,
        run_payload(cluster_id=cluster, instance_id="x-1", completed_at=now_iso()),
        key=b"x-1",
    )
    path = f"{V1}/{cluster}/instances/x-1/remediations"
    listed: list[dict[str, Any]] = []
    for _ in range(150):
        listed = (await client.get(path)).json()["remediations"]
        if listed:
            break
        await asyncio.sleep(0.2)
    (pending,) = listed
    before = await scrape(worker)
    control_plane.configure(fault="5xx", fault_requests=2)  # two transient failures
    approved = await client.post(f"{path}/{pending['id']}/approve", json={"comment": "go"})
    assert approved.status_code == 200, approved.text
    mode = pending["mode"]
    after = await settled(
        worker,
        lambda s: (
            value(s, "remediator_time_to_success_seconds_count", mode=mode)
            > value(before, "remediator_time_to_success_seconds_count", mode=mode)
        ),
    )
    done = (await client.get(f"{path}/{pending['id']}")).json()
    assert done["state"] == "SUCCEEDED", done

    published = Counter(
        t["event"]
        for t in unique_by_sequence(
            [
                t
                for t in await kafka.read(metrics_names.transitions, at_least=0, settle=0.5)
                if t["remediation_id"] == pending["id"]
            ]
        )
        if t["event"] != "CREATE_AUTOMATED"  # published before the first scrape
    )
    assert deltas(before, after, "remediator_transitions_total") == {
        labels(event=event): count for event, count in published.items()
    }
    steps = deltas(before, after, "remediator_executor_step_duration_seconds_count")
    assert steps == {labels(action=action, result="done"): 1 for action in STEPS[mode]}
    retries = deltas(before, after, "remediator_control_plane_retries_total")
    assert {dict(key)["cause"] for key in retries} == {"503"}
    assert sum(retries.values()) == 2
    assert deltas(before, after, "remediator_control_plane_errors_total") == {}
    took = deltas(before, after, "remediator_time_to_success_seconds_sum")[labels(mode=mode)]
    assert 0 < took < 120  # from the run's completed_at to the last step's end
    assert value(after, "remediator_open_remediations", cluster_id=cluster, state="RUNNING") == 0
    assert value(after, "remediator_executor_running") == 0


async def test_consumer_lag_of_every_owned_input_partition_drains_to_zero(
    worker: WorkerProcess, kafka: Kafka, metrics_names: Names, cluster: str
) -> None:
    for n in range(PARTITIONS * 3):  # records on every partition, most likely
        instance = f"l-{n}"
        payload = run_payload(
            cluster_id=cluster, instance_id=instance, result="PASSED", completed_at=now_iso()
        )
        await kafka.produce(metrics_names.active, payload, key=instance.encode())
    inputs = {metrics_names.active, metrics_names.passive}

    def lags(samples: Samples) -> dict[tuple[str, str], float]:
        return {
            (dict(key)["topic"], dict(key)["partition"]): count
            for (name, key), count in samples.items()
            if name == "remediator_consumer_lag_messages" and dict(key)["topic"] in inputs
        }

    after = await settled(
        worker, lambda s: len(lags(s)) == 2 * PARTITIONS and not any(lags(s).values())
    )
    assert lags(after) == {
        (topic, str(partition)): 0 for topic in inputs for partition in range(PARTITIONS)
    }
