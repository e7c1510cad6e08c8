"""The executor end to end: real worker processes, a real broker, and the simulated control
plane as its own process over real HTTP on loopback.

What each test proves is checked in three places that must agree: the REST API's record,
the transitions on the topic, and the control plane's log of the requests it received (the
judge of "nothing was done twice").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from remediator.kafka.embedded import free_port
from tests.builders import run_payload
from tests.integration.conftest import OPERATOR_TOKENS, Kafka, Names

pytestmark = pytest.mark.integration

STEPS = {
    "REMEDIATION_MODE_REBOOT_VM": ["REBOOT_VM"],
    "REMEDIATION_MODE_VM_ONLY": ["DELETE_VM", "PROVISION_VM"],
    "REMEDIATION_MODE_HOST_AWARE": ["CORDON_HOST", "DELETE_VM", "PROVISION_VM"],
    "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT": ["DELETE_VM"],
    "REMEDIATION_MODE_HOST_POWER_CYCLE": ["CORDON_HOST", "POWER_CYCLE_HOST", "UNCORDON_HOST"],
}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED"}


class ControlPlane:
    """``remediator control-plane`` as a process of its own; stopped at the end of the test.
    With ``ca`` (the CA that signed its certificate), it is reached over HTTPS."""

    def __init__(self, log_path: Path, port: int | None = None, ca: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "remediator.simulation.controlplane",
                    "--port",
                    str(self.port),
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=self._verify).is_success:
                    return
            assert self.process.poll() is None, self._log_path.read_text()
            time.sleep(0.1)
        raise AssertionError("control plane simulator did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def configure(self, **changes: Any) -> None:
        response = httpx.put(
            f"{self.url}/_sim/config", json=changes, timeout=5, verify=self._verify
        )
        assert response.status_code == 200, response.text

    def requests(self) -> list[dict[str, Any]]:
        return list(self.log()["requests"])

    def log(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_sim/log", timeout=5, verify=self._verify)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def performed(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests()
            if not r["replay"] and (instance_id is None or r["instance_id"] == instance_id)
        ]


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[Callable[..., ControlPlane]]:
    started: list[ControlPlane] = []

    def start(
        *args: str, port: int | None = None, launch: bool = True, ca: Path | None = None
    ) -> ControlPlane:
        cp = ControlPlane(tmp_path / f"control-plane-{len(started)}.log", port, ca)
        started.append(cp)
        if launch:
            cp.start(*args)
        return cp

    yield start
    for cp in started:
        cp.stop()


def executor_env(cp: ControlPlane, limit: int = 2, **extra: str) -> dict[str, str]:
    return {
        "REMEDIATOR_API_TOKENS": OPERATOR_TOKENS,
        "REMEDIATOR_CONTROL_PLANE_URL": cp.url,
        "REMEDIATOR_MAX_RUNNING_PER_CLUSTER": str(limit),
        "REMEDIATOR_POLL_INTERVAL_SECONDS": "0.1",
        "REMEDIATOR_POLL_INTERVAL_MAX_SECONDS": "0.3",
        "REMEDIATOR_CONTROL_PLANE_RETRY_MAX_SECONDS": "0.5",
        "REMEDIATOR_CONTROL_PLANE_TIMEOUT_SECONDS": "2",
        **extra,
    }


def base(cluster: str, instance: str) -> str:
    return f"/v1/compute/clusters/{cluster}/instances/{instance}/remediations"


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


async def create(
    client: httpx.AsyncClient, cluster: str, instance: str, mode: str, rid: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        base(cluster, instance),
        params={"remediation_id": rid or f"r-{instance}"},
        json={"mode": mode, "reason": "test"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for(
    client: httpx.AsyncClient,
    cluster: str,
    instance: str,
    rid: str,
    states: set[str],
    timeout: float = 40.0,
) -> dict[str, Any]:
    """Poll the API until the remediation is in one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    record: dict[str, Any] = {}
    while loop.time() < deadline:
        response = await client.get(f"{base(cluster, instance)}/{rid}")
        if response.status_code == 200:
            record = response.json()
            if record["state"] in states:
                return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"{rid} not in {states} after {timeout}s: {record}")


async def transitions(kafka: Kafka, names: Names, rid: str, at_least: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        records = await kafka.read(names.transitions, at_least=0, settle=0.5)
        mine = [r for r in records if r["remediation_id"] == rid]
        if len(mine) >= at_least or loop.time() > deadline:
            return sorted(mine, key=lambda r: r["sequence"])
        await asyncio.sleep(0.3)


def unique_by_sequence(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Transitions with repeats (at-least-once re-sends) dropped, as a consumer would."""
    seen: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["sequence"] in seen:
            assert seen[r["sequence"]]["transition_id"] == r["transition_id"]
            continue
        seen[r["sequence"]] = r
    assert sorted(seen) == list(range(1, len(seen) + 1)), "sequence has gaps"
    return [seen[n] for n in sorted(seen)]


async def test_each_mode_runs_exactly_its_steps_in_order(
    control_plane: Any, start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str
) -> None:
    cp = control_plane(
        "--latency",
        "REBOOT_VM=0.3",
        "--latency",
        "DELETE_VM=0.3",
        "--latency",
        "PROVISION_VM=0.3",
        "--latency",
        "CORDON_HOST=0.3",
        "--latency",
        "POWER_CYCLE_HOST=0.3",
        "--latency",
        "UNCORDON_HOST=0.3",
    )
    worker = start_worker(**executor_env(cp, limit=5))
    client = api(worker)
    for n, mode in enumerate(STEPS):
        await create(client, cluster, f"i-{n}", mode)
    for n, mode in enumerate(STEPS):
        done = await wait_for(client, cluster, f"i-{n}", f"r-i-{n}", TERMINAL)
        assert done["state"] == "SUCCEEDED", done
        assert done["start_time"]
        assert done["end_time"]
        assert done["start_time"] <= done["end_time"]
        performed = cp.performed(f"i-{n}")
        assert [r["action"] for r in performed] == STEPS[mode]
        assert [r["operation_id"] for r in performed] == [
            op["operation_id"] for op in done["operations"]
        ]
        assert [op["state"] for op in done["operations"]] == ["DONE"] * len(STEPS[mode])
        assert [r["avoid_current_host"] for r in performed] == [
            mode == "REMEDIATION_MODE_HOST_AWARE" and a == "PROVISION_VM" for a in STEPS[mode]
        ]
    # The transitions tell the same story, step by step, with no gap in the sequence; the
    # modes that cordon the host pass through QUARANTINING and QUARANTINED.
    for rid in ("r-i-2", "r-i-4"):  # HOST_AWARE, HOST_POWER_CYCLE
        cordoning = unique_by_sequence(await transitions(kafka, names, rid, at_least=8))
        assert [(t["event"], t["from_state"], t["to_state"]) for t in cordoning] == [
            ("CREATE_MANUAL", None, "PENDING"),
            ("QUARANTINE", "PENDING", "QUARANTINING"),
            ("STEP_STARTED", "QUARANTINING", "QUARANTINING"),
            ("QUARANTINED", "QUARANTINING", "QUARANTINED"),
            ("STEP_STARTED", "QUARANTINED", "RUNNING"),
            ("STEP_DONE", "RUNNING", "RUNNING"),
            ("STEP_STARTED", "RUNNING", "RUNNING"),
            ("SUCCEED", "RUNNING", "SUCCEEDED"),
        ], rid
        assert all(t["actor"] == "system:executor" for t in cordoning[1:])
    reboot = unique_by_sequence(await transitions(kafka, names, "r-i-0", at_least=4))
    assert [(t["from_state"], t["to_state"]) for t in reboot][:2] == [
        (None, "PENDING"),
        ("PENDING", "RUNNING"),
    ]


async def test_an_approved_automated_remediation_is_carried_out(
    control_plane: Any, start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str
) -> None:
    cp = control_plane("--latency", "REBOOT_VM=0.2")
    # In JSON log format: the log of the whole story is checked at the end.
    worker = start_worker(**executor_env(cp), REMEDIATOR_LOG_FORMAT="json")
    client = api(worker)
    await kafka.produce(
        names.active, run_payload(cluster_id=cluster, instance_id="i-1"), key=b"i-1"
    )
    listing: dict[str, Any] = {}
    for _ in range(100):
        listing = (await client.get(base(cluster, "i-1"))).json()
        if listing.get("remediations"):
            break
        await asyncio.sleep(0.2)
    (pending,) = listing["remediations"]
    assert pending["state"] == "PENDING_APPROVAL"
    await asyncio.sleep(1.0)
    assert cp.performed("i-1") == [], "nothing may happen before approval"
    approved = await client.post(
        f"{base(cluster, 'i-1')}/{pending['id']}/approve",
        json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
    )
    assert approved.status_code == 200, approved.text
    done = await wait_for(client, cluster, "i-1", pending["id"], TERMINAL)
    assert done["state"] == "SUCCEEDED"
    assert done["reviewed_by"] == "operator"
    assert done["active_health_check_run_id"]
    assert [r["action"] for r in cp.performed("i-1")] == ["REBOOT_VM"]

    entries = [json.loads(line) for line in worker.log().splitlines() if line.strip()]
    about_it = [e for e in entries if e.get("remediation_id") == pending["id"]]
    assert {(e["cluster_id"], e["instance_id"]) for e in about_it} == {(cluster, "i-1")}
    told = " | ".join(e["message"] for e in about_it)
    for part in ("opened remediation", "PENDING_APPROVAL -> PENDING", "REBOOT_VM on"):
        assert part in told, told
    assert any(e["message"].startswith("ready: API at") for e in entries)
    chatter = [e for e in entries if e["level"] == "INFO" and "Starting..." in e["message"]]
    assert chatter == [], "framework start-up lines are at debug"


async def test_a_failed_step_fails_the_remediation_with_that_error(
    control_plane: Any, start_worker: Any, api: Any, cluster: str
) -> None:
    cp = control_plane("--latency", "DELETE_VM=0.2", "--latency", "PROVISION_VM=0.2")
    cp.configure(
        failures=[
            {"action": "PROVISION_VM", "instance_id": "i-1", "error": "no capacity in zone b"}
        ]
    )
    worker = start_worker(**executor_env(cp))
    client = api(worker)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_VM_ONLY")
    failed = await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL)
    assert failed["state"] == "FAILED"
    assert "no capacity in zone b" in failed["error_message"]
    assert failed["error_message"].startswith("PROVISION_VM failed")
    assert [op["state"] for op in failed["operations"]] == ["DONE", "FAILED"]
    assert [r["action"] for r in cp.performed("i-1")] == ["DELETE_VM", "PROVISION_VM"]


async def test_an_outage_of_the_control_plane_delays_but_does_not_fail(
    control_plane: Any, start_worker: Any, api: Any, cluster: str
) -> None:
    # The control plane is down (connection refused) when the remediation starts.
    cp = control_plane(launch=False)
    worker = start_worker(**executor_env(cp))
    client = api(worker)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_VM_ONLY")
    await asyncio.sleep(3.0)
    record = (await client.get(f"{base(cluster, 'i-1')}/r-i-1")).json()
    assert record["state"] == "RUNNING", record
    # It comes back, answering 5xx for a while, then well.
    cp.start("--latency", "DELETE_VM=0.2", "--latency", "PROVISION_VM=0.2", "--fault", "5xx")
    await asyncio.sleep(2.0)
    assert (await client.get(f"{base(cluster, 'i-1')}/r-i-1")).json()["state"] == "RUNNING"
    cp.configure(fault="none")
    done = await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL)
    assert done["state"] == "SUCCEEDED", done
    assert [r["action"] for r in cp.performed("i-1")] == ["DELETE_VM", "PROVISION_VM"]
    assert "retry" in worker.log()


async def test_kill_9_in_the_middle_of_a_multi_step_remediation_repeats_no_step(
    control_plane: Any, start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str
) -> None:
    cp = control_plane(
        "--latency", "CORDON_HOST=0.3", "--latency", "DELETE_VM=4", "--latency", "PROVISION_VM=0.5"
    )
    env = executor_env(cp)
    first = start_worker(**env)
    client = api(first)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_HOST_AWARE")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while [r["action"] for r in cp.performed("i-1")] != ["CORDON_HOST", "DELETE_VM"]:
        assert loop.time() < deadline, cp.requests()
        await asyncio.sleep(0.1)
    first.kill()  # DELETE_VM is under way on the control plane

    second = start_worker(**env)
    client = api(second)
    done = await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL, timeout=60)
    assert done["state"] == "SUCCEEDED", done
    performed = cp.performed("i-1")
    assert [r["action"] for r in performed] == ["CORDON_HOST", "DELETE_VM", "PROVISION_VM"]
    assert len({r["operation_id"] for r in performed}) == 3
    # The restarted executor resumed polling DELETE_VM rather than posting it again.
    replays = [r for r in cp.requests() if r["replay"]]
    assert replays == [], replays
    history = unique_by_sequence(await transitions(kafka, names, "r-i-1", at_least=8))
    assert history[-1]["event"] == "SUCCEED"
    assert sum(t["event"] == "STEP_STARTED" for t in history) == 3


async def test_the_per_cluster_limit_holds_under_a_burst_of_approvals(
    control_plane: Any, start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str
) -> None:
    cp = control_plane("--latency", "REBOOT_VM=1.0")
    worker = start_worker(**executor_env(cp, limit=2))
    client = api(worker)
    instances = [f"i-{n}" for n in range(8)]
    for instance in instances:
        await kafka.produce(
            names.active,
            run_payload(cluster_id=cluster, instance_id=instance),
            key=instance.encode(),
        )
    pending: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(pending) < len(instances):
        assert loop.time() < deadline
        listing = (await client.get(base(cluster, "-"), params={"page_size": 100})).json()
        pending = {r["instance_id"]: r["id"] for r in listing["remediations"]}
        await asyncio.sleep(0.2)
    # Every approval at once.
    answers = await asyncio.gather(
        *(
            client.post(
                f"{base(cluster, i)}/{pending[i]}/approve",
                json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
            )
            for i in instances
        )
    )
    assert [a.status_code for a in answers] == [200] * len(instances)
    for instance in instances:
        done = await wait_for(client, cluster, instance, pending[instance], TERMINAL, timeout=60)
        assert done["state"] == "SUCCEEDED"
    # From the transitions: RUNNING intervals never overlap more than the limit.
    records = await kafka.read(names.transitions, at_least=0, settle=0.5)
    edges: list[tuple[str, int]] = []
    for r in records:
        if r["remediation"]["cluster_id"] != cluster:
            continue
        if r["event"] == "START":
            edges.append((r["occurred_at"], +1))
        elif r["to_state"] in TERMINAL and r["from_state"] == "RUNNING":
            edges.append((r["occurred_at"], -1))
    assert len(edges) == 2 * len(instances)
    running = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    assert peak == 2, f"peak {peak} RUNNING at once"
    assert len(cp.performed()) == len(instances)


async def test_cancel_wins_before_the_start_and_is_refused_once_running(
    control_plane: Any, start_worker: Any, api: Any, cluster: str
) -> None:
    cp = control_plane("--latency", "REBOOT_VM=3")
    worker = start_worker(**executor_env(cp, limit=1))
    client = api(worker)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_REBOOT_VM")
    await wait_for(client, cluster, "i-1", "r-i-1", {"RUNNING"})
    # The only slot is taken: the next one waits PENDING, and cancelling it wins.
    queued = await create(client, cluster, "i-2", "REMEDIATION_MODE_REBOOT_VM")
    assert queued["state"] == "PENDING"
    await asyncio.sleep(0.5)
    assert (await client.get(f"{base(cluster, 'i-2')}/r-i-2")).json()["state"] == "PENDING"
    cancelled = await client.post(f"{base(cluster, 'i-2')}/r-i-2/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELLED"
    # A RUNNING one cannot be cancelled.
    refused = await client.post(f"{base(cluster, 'i-1')}/r-i-1/cancel")
    assert refused.status_code == 409
    assert refused.json()["error"]["status"] == "FAILED_PRECONDITION"
    done = await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL)
    assert done["state"] == "SUCCEEDED"
    # The freed slot goes to the next one in line; the cancelled one never ran.
    await create(client, cluster, "i-3", "REMEDIATION_MODE_REBOOT_VM")
    assert (await wait_for(client, cluster, "i-3", "r-i-3", TERMINAL))["state"] == "SUCCEEDED"
    assert cp.performed("i-2") == []
    assert (await client.get(f"{base(cluster, 'i-2')}/r-i-2")).json()["state"] == "CANCELLED"


async def test_a_hanging_control_plane_does_not_block_the_stream(
    control_plane: Any, start_worker: Any, api: Any, kafka: Kafka, names: Names, cluster: str
) -> None:
    cp = control_plane("--fault", "hang")
    # One partition: every instance shares the stream of the one that is stuck.
    worker = start_worker(**executor_env(cp), REMEDIATOR_PARTITIONS="1")
    client = api(worker)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_REBOOT_VM")
    await wait_for(client, cluster, "i-1", "r-i-1", {"RUNNING"})
    await asyncio.sleep(1.0)  # the executor is now waiting on a request that never answers
    started = asyncio.get_running_loop().time()
    await kafka.produce(
        names.active, run_payload(cluster_id=cluster, instance_id="i-2"), key=b"i-2"
    )
    other = await create(client, cluster, "i-3", "REMEDIATION_MODE_REBOOT_VM")
    assert other["state"] in {"PENDING", "RUNNING"}
    listing: dict[str, Any] = {}
    for _ in range(50):
        listing = (await client.get(base(cluster, "i-2"))).json()
        if listing["remediations"]:
            break
        await asyncio.sleep(0.1)
    assert listing["remediations"][0]["state"] == "PENDING_APPROVAL"
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 10, f"signals and commands took {elapsed:.1f}s behind a hung step"
    record = (await client.get(f"{base(cluster, 'i-1')}/r-i-1")).json()
    assert record["state"] == "RUNNING"
    assert record["operations"][0]["state"] == "RUNNING"
    health = (await client.get("/healthz")).json()
    assert "r-i-1" in health["executing"]
    # When the control plane recovers, both finish.
    cp.configure(fault="none", latency={"REBOOT_VM": 0.2})
    assert (await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL))["state"] == "SUCCEEDED"
    assert (await wait_for(client, cluster, "i-3", "r-i-3", TERMINAL))["state"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "failpoint",
    [
        "batch.partial_write",
        "instances.after_start",
        "instances.after_step_started",
        "executor.after_post",
        "instances.after_step_done",
    ],
)
async def test_a_crash_at_any_point_of_the_execution_path_repeats_nothing(
    failpoint: str,
    control_plane: Any,
    start_worker: Any,
    api: Any,
    kafka: Kafka,
    names: Names,
    cluster: str,
) -> None:
    """The worker dies (SIGKILL, from a failpoint) at one exact point; a fresh one finishes
    everything, with each step performed once and the cluster's limit of 1 kept."""
    cp = control_plane(
        "--latency",
        "CORDON_HOST=0.3",
        "--latency",
        "DELETE_VM=0.3",
        "--latency",
        "PROVISION_VM=0.3",
        "--latency",
        "REBOOT_VM=0.3",
    )
    env = executor_env(cp, limit=1)
    doomed = start_worker(**env, REMEDIATOR_TEST_FAILPOINTS=failpoint)
    client = api(doomed)
    targets = [("i-1", "REMEDIATION_MODE_HOST_AWARE"), ("i-2", "REMEDIATION_MODE_REBOOT_VM")]
    for instance, mode in targets:
        # The worker may die under the second request: that is the point.
        with contextlib.suppress(httpx.HTTPError):
            await create(client, cluster, instance, mode)
    assert doomed.process is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while doomed.process.poll() is None:
        assert loop.time() < deadline, f"{failpoint} never hit:\n{doomed.log()[-2000:]}"
        await asyncio.sleep(0.1)
    assert doomed.process.returncode == -9, doomed.log()[-2000:]
    doomed.kill()

    client = api(start_worker(**env))
    for instance, mode in targets:  # retried as a client would: same id, nothing new
        await create(client, cluster, instance, mode)
    for instance in ("i-1", "i-2"):
        done = await wait_for(client, cluster, instance, f"r-{instance}", TERMINAL, timeout=60)
        assert done["state"] == "SUCCEEDED", done
    assert [r["action"] for r in cp.performed("i-1")] == [
        "CORDON_HOST",
        "DELETE_VM",
        "PROVISION_VM",
    ]
    assert [r["action"] for r in cp.performed("i-2")] == ["REBOOT_VM"]
    # Transitions: repeats only as exact repeats, and never two RUNNING at once.
    records = await kafka.read(names.transitions, at_least=0, settle=0.5)
    for rid in ("r-i-1", "r-i-2"):
        unique_by_sequence([r for r in records if r["remediation_id"] == rid])
    spans = {}
    for r in records:
        if r["event"] == "START":
            spans.setdefault(r["remediation_id"], [None, None])[0] = r["occurred_at"]
        if r["event"] == "SUCCEED":
            spans.setdefault(r["remediation_id"], [None, None])[1] = r["occurred_at"]
    (a_start, a_end), (b_start, b_end) = spans["r-i-1"], spans["r-i-2"]
    assert a_end <= b_start or b_end <= a_start, f"both RUNNING at once: {spans}"


async def test_queued_remediations_start_when_a_worker_restarts_with_a_higher_limit(
    control_plane: Any, start_worker: Any, api: Any, cluster: str
) -> None:
    cp = control_plane("--latency", "REBOOT_VM=0.2")
    off = start_worker(**executor_env(cp, limit=0))
    client = api(off)
    for instance in ("i-1", "i-2"):
        await create(client, cluster, instance, "REMEDIATION_MODE_REBOOT_VM")
    await asyncio.sleep(1.0)
    assert (await client.get(f"{base(cluster, 'i-1')}/r-i-1")).json()["state"] == "PENDING"
    off.stop()

    client = api(start_worker(**executor_env(cp, limit=1)))
    for instance in ("i-1", "i-2"):
        done = await wait_for(client, cluster, instance, f"r-{instance}", TERMINAL)
        assert done["state"] == "SUCCEEDED"
    assert [r["action"] for r in cp.performed()] == ["REBOOT_VM", "REBOOT_VM"]


async def test_a_worker_joining_mid_execution_takes_over_and_no_step_is_posted_twice(
    control_plane: Any, start_worker: Any, api: Any
) -> None:
    """Only the owner acts: at the rebalance the first worker's tasks have stopped before
    its partitions move, and the new owner looks each step up before posting it. With
    one shared control plane, every step is posted once, none replayed."""
    cp = control_plane("--latency", "REBOOT_VM=10")
    env = executor_env(cp)
    first = start_worker(**env)
    client = api(first)
    clusters = [f"cl-{uuid.uuid4().hex[:8]}" for _ in range(8)]  # spread over partitions
    for cluster in clusters:
        await create(client, cluster, "i-1", "REMEDIATION_MODE_REBOOT_VM", rid=f"r-{cluster}")
    for cluster in clusters:
        await wait_for(client, cluster, "i-1", f"r-{cluster}", {"RUNNING"})

    second = start_worker(**env)  # joins: a rebalance while every step is under way
    for cluster in clusters:
        done = await wait_for(api(second), cluster, "i-1", f"r-{cluster}", TERMINAL, timeout=60)
        assert done["state"] == "SUCCEEDED", done

    posted = [r for r in cp.requests() if r["cluster_id"] in clusters]
    assert sorted(r["cluster_id"] for r in posted if not r["replay"]) == sorted(clusters)
    assert [r for r in posted if r["replay"]] == [], "a step was posted twice"
    assert "executor: resuming" in second.log(), "the new worker took over nothing"


async def test_refused_credentials_fail_the_remediation_at_once_and_the_right_ones_work(
    control_plane: Any, start_worker: Any, api: Any, tmp_path: Path, cluster: str
) -> None:
    """A control plane that wants a bearer token the worker does not have: the remediation
    fails at its first call, saying so, with no retry storm; once the token is right
    (here: the control plane restarted with the worker's), remediations succeed. The
    token is never printed."""
    token, wrong = "the-w0rker-token-never-printed", "the-c0ntrol-plane-wants-this"
    (tmp_path / "wanted").write_text(wrong + "\n")
    cp = control_plane("--latency", "REBOOT_VM=0.2", "--token-file", str(tmp_path / "wanted"))
    worker = start_worker(**executor_env(cp, REMEDIATOR_CONTROL_PLANE_TOKEN=token))
    client = api(worker)
    await create(client, cluster, "i-1", "REMEDIATION_MODE_REBOOT_VM")
    failed = await wait_for(client, cluster, "i-1", "r-i-1", TERMINAL)
    assert failed["state"] == "FAILED", failed
    assert failed["error_message"].startswith(
        "REBOOT_VM failed: control plane refused the credentials (401): "
        "missing or invalid bearer token"
    ), failed["error_message"]
    await asyncio.sleep(1.0)  # long enough for a few retries, had there been any
    log = cp.log()
    assert 1 <= log["refused"] <= 2, log  # the step's look-up; nothing retried
    assert log["requests"] == []  # nothing posted, nothing performed

    cp.stop()
    (tmp_path / "wanted").write_text(token + "\n")
    cp = control_plane(
        "--latency", "REBOOT_VM=0.2", "--token-file", str(tmp_path / "wanted"), port=cp.port
    )
    await create(client, cluster, "i-2", "REMEDIATION_MODE_REBOOT_VM")
    done = await wait_for(client, cluster, "i-2", "r-i-2", TERMINAL)
    assert done["state"] == "SUCCEEDED", done
    assert [r["action"] for r in cp.performed("i-2")] == ["REBOOT_VM"]
    assert cp.log()["refused"] == 0
    assert token not in worker.log()


async def test_over_mutual_tls_the_executor_presents_its_certificate(
    control_plane: Any, start_worker: Any, api: Any, tmp_path: Path, cluster: str
) -> None:
    """A control plane served over HTTPS by a CA made for the test, that wants a client
    certificate: without one (the CA trusted) the remediation fails saying so; with
    REMEDIATOR_CONTROL_PLANE_CAFILE, _CERTFILE and _KEYFILE it succeeds."""
    ca = trustme.CA()
    pem = {name: tmp_path / f"{name}.pem" for name in ("ca", "server", "cert", "key")}
    ca.cert_pem.write_to_path(str(pem["ca"]))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem["server"]))
    issued = ca.issue_cert("remediator@example")
    issued.cert_chain_pems[0].write_to_path(str(pem["cert"]))
    issued.private_key_pem.write_to_path(str(pem["key"]))
    cp = control_plane(
        "--latency",
        "REBOOT_VM=0.2",
        "--tls-certfile",
        str(pem["server"]),
        "--tls-client-cafile",
        str(pem["ca"]),
        ca=pem["ca"],
    )
    trusting = executor_env(cp, REMEDIATOR_CONTROL_PLANE_CAFILE=str(pem["ca"]))
    anonymous = start_worker(**trusting)
    await create(api(anonymous), cluster, "i-1", "REMEDIATION_MODE_REBOOT_VM")
    failed = await wait_for(api(anonymous), cluster, "i-1", "r-i-1", TERMINAL)
    assert failed["state"] == "FAILED", failed
    assert failed["error_message"].startswith(
        "REBOOT_VM failed: control plane refused the credentials (401): "
        "a client certificate is required"
    ), failed["error_message"]
    anonymous.stop()

    presenting = start_worker(
        **trusting,
        REMEDIATOR_CONTROL_PLANE_CERTFILE=str(pem["cert"]),
        REMEDIATOR_CONTROL_PLANE_KEYFILE=str(pem["key"]),
    )
    await create(api(presenting), cluster, "i-2", "REMEDIATION_MODE_REBOOT_VM")
    done = await wait_for(api(presenting), cluster, "i-2", "r-i-2", TERMINAL)
    assert done["state"] == "SUCCEEDED", done
    assert [r["action"] for r in cp.performed()] == ["REBOOT_VM"]
    assert "control plane: https://127.0.0.1" in presenting.log()  # the banner
