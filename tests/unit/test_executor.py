"""The executor against a scripted control plane (httpx's in-memory transport), with its
writer stood in for: every report it sends is applied to the record as the instance's
owner applies it (``apply_report``) and handed back (``observe``). What is checked is what
a consumer of the transitions and the control plane would see."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx

from remediator.domain.commands import Command, CommandKind, handle
from remediator.domain.execution import apply_report, running_remediation, start
from remediator.domain.models import (
    RemediationMode,
    RemediationState,
    RemediationTransition,
    StepState,
)
from remediator.domain.state import InstanceState
from remediator.pipeline.controlplane import Backoff, ControlPlaneClient
from remediator.pipeline.executor import Executor
from remediator.pipeline.messages import InboxMessage
from remediator.pipeline.outbox import Record
from tests.builders import T0

NOW = T0 + timedelta(minutes=1)
KEY = b"c1/i1"
Answer = Callable[[httpx.Request], httpx.Response]


def started(mode: RemediationMode = RemediationMode.REBOOT_VM) -> InstanceState:
    """Instance c1/i1 with a remediation just started (RUNNING, steps PLANNED)."""
    command = Command(
        command_id=str(uuid.uuid4()),
        kind=CommandKind.CREATE,
        cluster_id="c1",
        instance_id="i1",
        principal="alice",
        issued_at=T0,
        remediation_id="r1",
        mode=mode,
    )
    return start(handle(None, command, T0).state, NOW)[0]


class Writer:
    """Stands in for the instance's owner: applies each report, hands the record back."""

    def __init__(self, state: InstanceState) -> None:
        self.state = state
        self.transitions: list[RemediationTransition] = []
        self.executor: Executor | None = None

    async def deliver(self, records: Sequence[Record]) -> None:
        assert self.executor is not None
        for record in records:
            report = InboxMessage.model_validate_json(record.value or b"").report
            assert report is not None
            applied = apply_report(self.state, report, NOW)
            self.state = applied.state
            self.transitions.extend(applied.transitions)
            self.executor.observe(KEY, self.state)


async def carry_out(state: InstanceState, answer: Answer) -> tuple[Writer, list[httpx.Request]]:
    """Let an executor carry the instance's remediation out; the last transition and
    every request the control plane received."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    client = ControlPlaneClient(
        lambda: "http://cp.test",
        transport=httpx.MockTransport(handler),
        backoff=Backoff(base=0.01, cap=0.01),
    )
    writer = Writer(state)
    executor = Executor(
        inbox="inbox",
        partitions=1,
        deliver=lambda: writer.deliver,
        client=client,
        poll=Backoff(base=0.01, cap=0.02, factor=1.5),
        step_timeout=timedelta(hours=1),
        clock=lambda: NOW,
    )
    writer.executor = executor
    executor.resume([(KEY, state)])
    try:
        async with asyncio.timeout(10):
            while running_remediation(writer.state) is not None:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.01)
    finally:
        await executor.stop_for_revocation()
        await client.aclose()
    return writer, seen


def operation(request: httpx.Request, **fields: Any) -> httpx.Response:
    """The control plane's answer about the operation a request names."""
    operation_id = request.url.path.rsplit("/", 1)[-1]
    return httpx.Response(
        200, json={"operation_id": operation_id, "action": "REBOOT_VM", "state": "DONE", **fields}
    )


async def test_an_operation_of_another_instance_is_refused_never_taken_for_ours() -> None:
    """An operation id that, on the control plane, already belongs to another instance
    (ids of 0.4 were not bound to one): the step fails, nothing is posted."""
    writer, seen = await carry_out(
        started(), lambda r: operation(r, cluster_id="c1", instance_id="i-other")
    )
    last = writer.transitions[-1].remediation
    assert last.state is RemediationState.FAILED
    assert last.error_message is not None
    assert "acts on cluster c1 instance i-other, not on this remediation's c1/i1" in (
        last.error_message
    )
    assert [r.method for r in seen] == ["GET"]


async def test_refused_credentials_fail_the_remediation_at_once_and_readably() -> None:
    def unauthenticated(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "UNAUTHENTICATED", "message": "missing or invalid token"}}
        return httpx.Response(401, json=body)

    writer, seen = await carry_out(started(RemediationMode.VM_ONLY), unauthenticated)
    last = writer.transitions[-1].remediation
    assert last.state is RemediationState.FAILED
    assert last.error_message is not None
    assert last.error_message.startswith(
        "DELETE_VM failed: control plane refused the credentials (401): missing or invalid token"
    )
    assert len(seen) == 1  # no retries, no further step


async def test_a_remediation_started_by_0_4_carries_on_with_its_recorded_operation_ids() -> None:
    """Upgrade: a step in flight keeps the id 0.4 posted it under (the executor reads the
    ids from the record, never recomputes them): it is polled, not posted again."""
    state = started(RemediationMode.VM_ONLY)
    assert state.open is not None
    remediation = state.open.remediation
    legacy = [
        op.model_copy(update={"operation_id": f"r1.step-{n}.{op.action.value}"})
        for n, op in enumerate(remediation.operations, start=1)
    ]
    legacy[0] = legacy[0].model_copy(update={"state": StepState.RUNNING, "start_time": NOW})
    state = state.model_copy(
        update={
            "open": state.open.model_copy(
                update={"remediation": remediation.model_copy(update={"operations": legacy})}
            )
        }
    )

    known = {"r1.step-1.DELETE_VM": "DELETE_VM"}  # posted by 0.4 before the upgrade

    def control_plane(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = httpx.Response(200, content=request.content).json()
            known[body["operation_id"]] = body["action"]
            return httpx.Response(201, json={**body, "state": "RUNNING"})
        operation_id = request.url.path.rsplit("/", 1)[-1]
        if operation_id not in known:
            return httpx.Response(404, json={"error": {"message": "no such operation"}})
        return operation(request, action=known[operation_id], cluster_id="c1", instance_id="i1")

    writer, seen = await carry_out(state, control_plane)
    assert writer.transitions[-1].remediation.state is RemediationState.SUCCEEDED
    assert [(r.method, r.url.path) for r in seen][:1] == [
        ("GET", "/v1/operations/r1.step-1.DELETE_VM")
    ]
    posted = [httpx.Response(200, content=r.content).json() for r in seen if r.method == "POST"]
    assert [p["operation_id"] for p in posted] == ["r1.step-2.PROVISION_VM"]
