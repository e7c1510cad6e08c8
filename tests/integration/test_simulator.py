"""The simulated compute control plane, over real HTTP on loopback.

Time is a fake clock the tests move by hand, so latencies and ``fault_seconds`` cost
nothing; the only real waits are the client timeout of the hang test and the start of the
``python -m remediator.simulation.controlplane`` process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from remediator.domain.models import Operation, StepAction
from remediator.kafka.embedded import free_port
from remediator.pipeline.controlplane import ControlPlaneClient
from remediator.simulation.controlplane import (
    ControlPlaneSimulator,
    OperationState,
    SimulatorConfig,
    add_arguments,
    run,
    tls_context,
)

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[ControlPlaneSimulator]:
    simulator = ControlPlaneSimulator(SimulatorConfig(seed=42), clock=clock)
    await simulator.start(port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def client(sim: ControlPlaneSimulator) -> AsyncIterator[httpx.AsyncClient]:
    assert sim.url is not None
    async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as http:
        yield http


def ops_path(cluster_id: str = "c1", instance_id: str = "i-1") -> str:
    return f"/v1/clusters/{cluster_id}/instances/{instance_id}/operations"


async def post_op(
    client: httpx.AsyncClient,
    operation_id: str,
    action: str = "DELETE_VM",
    *,
    cluster_id: str = "c1",
    instance_id: str = "i-1",
    **extra: Any,
) -> httpx.Response:
    body = {"operation_id": operation_id, "action": action, **extra}
    return await client.post(ops_path(cluster_id, instance_id), json=body)


async def state_of(client: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/operations/{operation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_operation_is_running_until_its_latency_has_passed(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    response = await post_op(client, "op-1", "DELETE_VM", avoid_current_host=True)

    assert response.status_code == 201
    created = response.json()
    assert created["state"] == "RUNNING"
    assert created["operation_id"] == "op-1"
    assert created["action"] == "DELETE_VM"
    assert created["cluster_id"] == "c1"
    assert created["instance_id"] == "i-1"
    assert created["avoid_current_host"] is True
    assert created["created_at"].endswith("Z")
    assert "error" not in created

    clock.advance(1.9)  # DELETE_VM takes 2 s by default
    assert (await state_of(client, "op-1"))["state"] == "RUNNING"
    clock.advance(0.1)
    done = await state_of(client, "op-1")
    assert done["state"] == "DONE"
    assert "error" not in done
    assert sim.operations["op-1"].state is OperationState.DONE

    listed = (await client.get("/_sim/operations")).json()["operations"]
    assert [(op["operation_id"], op["state"]) for op in listed] == [("op-1", "DONE")]


async def test_latency_is_per_action_and_configurable(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    response = await client.put("/_sim/config", json={"latency": {"CORDON_HOST": 0}})
    assert response.status_code == 200
    assert response.json()["latency"] == {
        "REBOOT_VM": 3.0,
        "DELETE_VM": 2.0,
        "PROVISION_VM": 5.0,
        "CORDON_HOST": 0.0,
        "POWER_CYCLE_HOST": 4.0,
        "UNCORDON_HOST": 1.0,
    }

    assert (await post_op(client, "cordon", "CORDON_HOST")).json()["state"] == "DONE"
    assert (await post_op(client, "provision", "PROVISION_VM")).json()["state"] == "RUNNING"
    clock.advance(4.99)
    assert (await state_of(client, "provision"))["state"] == "RUNNING"
    clock.advance(0.01)
    assert (await state_of(client, "provision"))["state"] == "DONE"


async def test_reposting_an_operation_repeats_nothing(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await post_op(client, "op-1", "REBOOT_VM")
    clock.advance(0.5)
    again = await post_op(client, "op-1", "REBOOT_VM")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert list(sim.operations) == ["op-1"]

    entries = (await client.get("/_sim/log")).json()["requests"]
    assert [(entry["seq"], entry["replay"]) for entry in entries] == [(1, False), (2, True)]
    assert all(entry["operation_id"] == "op-1" for entry in entries)
    assert all(entry["action"] == "REBOOT_VM" for entry in entries)
    assert all(entry["received_at"].endswith("Z") for entry in entries)
    performed = sim.performed()
    assert [(entry.operation_id, entry.action) for entry in performed] == [
        ("op-1", StepAction.REBOOT_VM)
    ]


async def test_reusing_an_operation_id_for_something_else_is_a_conflict(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    assert (await post_op(client, "op-1", "DELETE_VM")).status_code == 201

    other_instance = await post_op(client, "op-1", "DELETE_VM", instance_id="i-2")
    other_cluster = await post_op(client, "op-1", "DELETE_VM", cluster_id="c2")
    other_action = await post_op(client, "op-1", "PROVISION_VM")

    for response in (other_instance, other_cluster, other_action):
        assert response.status_code == 409
        assert error_code(response) == "CONFLICT"
        assert "op-1" in response.json()["error"]["message"]
    assert len(sim.operations) == 1
    assert len(sim.performed()) == 1
    assert sim.operations["op-1"].instance_id == "i-1"


async def test_unknown_operation_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/operations/nope")

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"",
        b"[]",
        b'{"action": "DELETE_VM"}',
        b'{"operation_id": "op-1"}',
        b'{"operation_id": "op-1", "action": "FORMAT_DISK"}',
        b'{"operation_id": 7, "action": "DELETE_VM"}',
        b'{"operation_id": "", "action": "DELETE_VM"}',
        b'{"operation_id": "op-1", "action": "DELETE_VM", "avoid_current_host": "yes"}',
        b'{"operation_id": "op-1", "action": "DELETE_VM", "surprise": 1}',
    ],
)
async def test_bad_operation_body_is_invalid_argument(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        ops_path(), content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert sim.operations == {}
    assert sim.log == []


async def test_failure_rule_fails_matching_operations_a_limited_number_of_times(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rule = {"action": "DELETE_VM", "cluster_id": "c1", "error": "disk on fire", "times": 2}
    response = await client.put("/_sim/config", json={"failures": [rule]})
    assert response.status_code == 200

    await post_op(client, "reboot", "REBOOT_VM")  # other action: not matched
    await post_op(client, "elsewhere", "DELETE_VM", cluster_id="c2")  # other cluster
    await post_op(client, "del-1", "DELETE_VM")
    assert (await client.get("/_sim/config")).json()["failures"][0]["times"] == 1
    await post_op(client, "del-2", "DELETE_VM", instance_id="i-2")
    await post_op(client, "del-3", "DELETE_VM")
    assert (await client.get("/_sim/config")).json()["failures"] == []  # used up

    assert (await state_of(client, "del-1"))["state"] == "RUNNING"
    clock.advance(10)
    states = {
        op_id: await state_of(client, op_id)
        for op_id in ("reboot", "elsewhere", "del-1", "del-2", "del-3")
    }
    assert {op_id: body["state"] for op_id, body in states.items()} == {
        "reboot": "DONE",
        "elsewhere": "DONE",
        "del-1": "FAILED",
        "del-2": "FAILED",
        "del-3": "DONE",
    }
    assert states["del-1"]["error"] == "disk on fire"
    assert states["del-2"]["error"] == "disk on fire"
    assert "error" not in states["del-3"]


async def test_failure_rate_one_fails_every_operation(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(failure_rate=1.0)

    created = (await post_op(client, "op-1", "DELETE_VM")).json()
    assert created["state"] == "RUNNING"
    assert "error" not in created  # the error shows only once it has failed
    clock.advance(2)

    failed = await state_of(client, "op-1")
    assert failed["state"] == "FAILED"
    assert failed["error"] == "simulated failure: DELETE_VM on cluster c1 instance i-1"


async def test_seed_makes_random_failures_repeatable(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    async def outcomes(prefix: str) -> list[str]:
        response = await client.put("/_sim/config", json={"failure_rate": 0.5, "seed": 3})
        assert response.status_code == 200
        for n in range(12):
            await post_op(client, f"{prefix}-{n}", "CORDON_HOST")
        clock.advance(1)
        return [(await state_of(client, f"{prefix}-{n}"))["state"] for n in range(12)]

    first = await outcomes("a")
    assert set(first) == {"DONE", "FAILED"}
    assert await outcomes("b") == first


async def test_5xx_fault_for_a_number_of_requests(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    response = await client.put("/_sim/config", json={"fault": "5xx", "fault_requests": 2})
    assert response.status_code == 200
    assert response.json()["fault"] == "5xx"

    outage = [await post_op(client, "op-1"), await client.get("/v1/operations/op-1")]
    assert (await client.get("/healthz")).json() == {"status": "ok"}  # control: no fault
    after = await post_op(client, "op-1")

    for response in outage:
        assert response.status_code == 503
        assert response.json() == {"error": {"code": "UNAVAILABLE", "message": "simulated outage"}}
    assert after.status_code == 201
    assert [entry.operation_id for entry in sim.log] == ["op-1"]  # the 503s did nothing
    config = (await client.get("/_sim/config")).json()
    assert (config["fault"], config["fault_requests"]) == ("none", None)


async def test_5xx_fault_for_a_time(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    sim.configure(fault="5xx", fault_seconds=5)

    assert (await post_op(client, "op-1")).status_code == 503
    clock.advance(4.9)
    assert (await post_op(client, "op-1")).status_code == 503
    clock.advance(0.1)
    assert (await post_op(client, "op-1")).status_code == 201
    assert sim.config.fault == "none"


async def test_hang_fault_never_answers_and_does_not_block_stop(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    sim.configure(fault="hang")

    body = {"operation_id": "op-1", "action": "DELETE_VM"}
    with pytest.raises(httpx.TimeoutException):
        await client.post(ops_path(), json=body, timeout=0.3)
    with pytest.raises(httpx.TimeoutException):
        await client.get("/v1/operations/op-1", timeout=0.3)
    assert (await client.get("/healthz")).status_code == 200  # other requests still served
    assert sim.operations == {}
    assert sim.log == []

    still_hanging = asyncio.create_task(client.get("/v1/operations/op-1", timeout=10))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    async with asyncio.timeout(2):
        await sim.stop()
    assert time.monotonic() - started < 1.0
    assert sim.url is None
    with pytest.raises(httpx.TransportError):
        await still_hanging


async def test_config_update_is_validated(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    before = (await client.get("/_sim/config")).json()

    for body in (
        {"surprise": 1},
        {"failure_rate": 2},
        {"latency": {"DELETE_VM": -1}},
        {"latency": {"FORMAT_DISK": 1}},
        {"fault": "sometimes"},
        {"fault_requests": 0},
        {"failures": [{"action": "DELETE_VM"}]},  # no error text
        {"failures": [{"error": "x", "rack": "r1"}]},
    ):
        response = await client.put("/_sim/config", json=body)
        assert response.status_code == 400, body
        assert error_code(response) == "INVALID_ARGUMENT"
    bad_json = await client.put("/_sim/config", content=b"{")
    assert bad_json.status_code == 400

    assert (await client.get("/_sim/config")).json() == before
    with pytest.raises(ValueError, match="surprise"):
        sim.configure(surprise=1)


async def test_setting_a_fault_clears_the_limits_of_the_previous_one(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    sim.configure(fault="5xx", fault_requests=3)
    config = sim.configure(fault="5xx")

    assert config.fault_requests is None
    for n in range(4):
        assert (await post_op(client, f"op-{n}")).status_code == 503


async def test_reset_restores_the_initial_state(
    sim: ControlPlaneSimulator, client: httpx.AsyncClient
) -> None:
    initial = (await client.get("/_sim/config")).json()
    await post_op(client, "op-1")
    sim.configure(failure_rate=0.3, fault="5xx", latency={"REBOOT_VM": 9})

    response = await client.post("/_sim/reset")

    assert response.status_code == 200
    assert response.json() == initial
    assert (await client.get("/_sim/config")).json() == initial
    assert (await client.get("/_sim/log")).json() == {"requests": [], "refused": 0}
    assert (await client.get("/_sim/operations")).json() == {"operations": []}
    assert (await client.get("/v1/operations/op-1")).status_code == 404


def test_bad_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    for value in ("FORMAT_DISK=1", "DELETE_VM", "DELETE_VM=-1", "DELETE_VM=soon"):
        assert run(parser.parse_args(["--latency", value])) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "--latency" in err
    assert run(parser.parse_args(["--failure-rate", "1.5"])) == 2
    assert "--failure-rate" in capsys.readouterr().err


def test_module_serves_until_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "remediator.simulation.controlplane", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"{url}/healthz", timeout=1)
                break
            assert process.poll() is None, "simulator exited early"
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.05)
        assert response.json() == {"status": "ok"}

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        err = process.stderr.read().decode()
        assert f"control-plane simulator listening on {url}\n" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


async def test_with_a_token_every_v1_call_needs_it_and_a_refusal_says_why(
    clock: FakeClock,
) -> None:
    simulator = ControlPlaneSimulator(SimulatorConfig(seed=1), clock=clock, token="t0ken")
    url = await simulator.start(port=0)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t0ken"}):
                refused = await client.get("/v1/operations/op-1", headers=headers)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"] == "Bearer"
                assert refused.json() == {
                    "error": {
                        "code": "UNAUTHENTICATED",
                        "message": "missing or invalid bearer token",
                    }
                }
            client.headers["Authorization"] = "Bearer t0ken"
            assert (await post_op(client, "op-1")).status_code == 201
            assert (await client.get("/v1/operations/op-1")).status_code == 200
            # The switches and the health check stay open, for demos and probes.
            del client.headers["Authorization"]
            assert (await client.get("/_sim/config")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            log = (await client.get("/_sim/log")).json()
            assert (log["refused"], len(log["requests"])) == (3, 1)
    finally:
        await simulator.stop()


async def test_ids_with_any_character_round_trip_through_the_executors_client(
    sim: ControlPlaneSimulator,
) -> None:
    """The executor encodes every id as one path segment; the simulator decodes it."""
    assert sim.url is not None
    url = sim.url
    client = ControlPlaneClient(lambda: url)
    odd = Operation(operation_id="r/1.step-1 ?#%..", action=StepAction.REBOOT_VM)
    try:
        started = await client.start("c 1", "i%2F1", odd)
        assert started.operation_id == odd.operation_id
        found = await client.get(odd.operation_id)
        assert found is not None
        assert found.operation_id == "r/1.step-1 ?#%.."
        assert await client.get("..") is None  # a 404 for that id, not the parent path
    finally:
        await client.aclose()
    (entry,) = sim.log
    assert (entry.operation_id, entry.cluster_id, entry.instance_id) == (
        "r/1.step-1 ?#%..",
        "c 1",
        "i%2F1",
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "server", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client = ca.issue_cert("remediator@example")
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return files


async def test_over_mutual_tls_a_v1_call_without_a_client_certificate_is_a_401(
    pki: dict[str, Path], clock: FakeClock
) -> None:
    simulator = ControlPlaneSimulator(clock=clock)
    context = tls_context(pki["server"], client_cafile=pki["ca"])
    url = await simulator.start(port=0, ssl_context=context)
    assert url.startswith("https://127.0.0.1:")
    anonymous = ssl.create_default_context(cafile=pki["ca"])
    presenting = ssl.create_default_context(cafile=pki["ca"])
    presenting.load_cert_chain(pki["cert"], pki["key"])
    try:
        async with httpx.AsyncClient(base_url=url, verify=anonymous) as client:
            refused = await client.get("/v1/operations/op-1")
            assert refused.status_code == 401
            assert refused.json()["error"]["message"] == "a client certificate is required"
            assert (await client.get("/healthz")).status_code == 200
        async with httpx.AsyncClient(base_url=url, verify=presenting) as client:
            assert (await client.get("/v1/operations/op-1")).status_code == 404
    finally:
        await simulator.stop()


def test_a_token_file_that_cannot_be_read_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    missing = tmp_path / "missing"
    assert run(parser.parse_args(["--token-file", str(missing)])) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"control-plane simulator: --token-file: cannot read {missing} (No such file or directory)"
    ]
    assert run(parser.parse_args(["--tls-client-cafile", str(tmp_path)])) == 2
    assert "need --tls-certfile" in capsys.readouterr().err
