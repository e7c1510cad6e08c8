"""The control-plane client's failure model: what is retried, what fails, how long it waits.

These drive the client through httpx's in-memory transport so each failure can be scripted
exactly; the executor's behaviour against a real HTTP server is in the integration tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from remediator.domain.models import Operation, StepAction
from remediator.pipeline.controlplane import (
    Backoff,
    ControlPlaneClient,
    ControlPlaneRejected,
    OperationState,
)

OP = Operation(operation_id="r1.step-1.REBOOT_VM", action=StepAction.REBOOT_VM)
RUNNING = {"operation_id": OP.operation_id, "action": "REBOOT_VM", "state": "RUNNING"}


def scripted(answers: list[Callable[[httpx.Request], httpx.Response]]) -> httpx.MockTransport:
    calls = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(calls)(request)

    return httpx.MockTransport(handler)


def status(code: int, body: object = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json=body if body is not None else {})


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client(transport: httpx.MockTransport, sleeps: Sleeps) -> ControlPlaneClient:
    return ControlPlaneClient(
        lambda: "http://cp.test",
        backoff=Backoff(base=0.5, cap=4.0),
        sleep=sleeps,
        rng=random.Random(7),
        transport=transport,
    )


async def test_connection_errors_timeouts_and_5xx_are_retried_until_it_answers() -> None:
    sleeps = Sleeps()
    answers = [refused, timed_out, status(503), status(500), status(429), status(201, RUNNING)]
    cp = client(scripted(answers), sleeps)
    result = await cp.start("c1", "i1", OP)
    assert result.state is OperationState.RUNNING
    assert cp.retries == 5
    assert len(sleeps.delays) == 5
    await cp.aclose()


async def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    sleeps = Sleeps()
    cp = client(scripted([status(503)] * 12 + [status(200, RUNNING)]), sleeps)
    await cp.start("c1", "i1", OP)
    ceilings = [min(4.0, 0.5 * 2**n) for n in range(12)]
    assert all(c / 10 <= d <= c for d, c in zip(sleeps.delays, ceilings, strict=True))
    assert max(sleeps.delays) <= 4.0
    assert len(set(sleeps.delays)) > 6  # jittered, not a fixed schedule
    await cp.aclose()


async def test_a_4xx_is_a_permanent_refusal_with_the_control_planes_message() -> None:
    body = {"error": {"code": "INVALID_ARGUMENT", "message": "unknown instance i1"}}
    cp = client(scripted([status(400, body)]), Sleeps())
    with pytest.raises(ControlPlaneRejected, match="HTTP 400 unknown instance i1"):
        await cp.start("c1", "i1", OP)
    await cp.aclose()


async def test_an_unknown_operation_is_none_not_an_error() -> None:
    cp = client(scripted([status(404, {"error": {"message": "no such operation"}})]), Sleeps())
    assert await cp.get(OP.operation_id) is None
    await cp.aclose()


async def test_an_answer_that_is_not_an_operation_is_refused_readably() -> None:
    cp = client(scripted([status(200, {"hello": "world"})]), Sleeps())
    with pytest.raises(ControlPlaneRejected, match="unreadable operation"):
        await cp.get(OP.operation_id)
    await cp.aclose()


async def test_the_post_carries_the_idempotency_key_and_the_contract_body() -> None:
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=RUNNING)

    host_aware = OP.model_copy(
        update={"action": StepAction.PROVISION_VM, "avoid_current_host": True}
    )
    cp = client(scripted([capture]), Sleeps())
    await cp.start("c1", "i-7", host_aware)
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/v1/clusters/c1/instances/i-7/operations"
    assert httpx.Response(200, content=request.content).json() == {
        "operation_id": OP.operation_id,
        "action": "PROVISION_VM",
        "avoid_current_host": True,
    }
    await cp.aclose()


@pytest.mark.parametrize("code", [401, 403])
async def test_refused_credentials_are_permanent_and_said_in_so_many_words(code: int) -> None:
    sleeps = Sleeps()
    body = {"error": {"code": "UNAUTHENTICATED", "message": "invalid bearer token"}}
    cp = client(scripted([status(code, body)]), sleeps)  # a second call would raise
    with pytest.raises(ControlPlaneRejected) as caught:
        await cp.get(OP.operation_id)
    assert str(caught.value).startswith(
        f"control plane refused the credentials ({code}): invalid bearer token"
    )
    assert (cp.retries, sleeps.delays) == (0, [])
    await cp.aclose()


async def test_every_id_is_one_percent_encoded_path_segment() -> None:
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=RUNNING)

    odd = OP.model_copy(update={"operation_id": "a/../b?c#d%e f"})
    cp = client(scripted([capture, capture, capture]), Sleeps())
    await cp.start("c/1", "..", odd)
    await cp.get(odd.operation_id)
    await cp.get("..")
    await cp.aclose()
    assert [r.url.raw_path for r in seen] == [
        b"/v1/clusters/c%2F1/instances/%2E%2E/operations",
        b"/v1/operations/a%2F..%2Fb%3Fc%23d%25e%20f",
        b"/v1/operations/%2E%2E",
    ]
